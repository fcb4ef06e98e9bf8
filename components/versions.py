"""Every external version the platform deploys, pinned in one place.

Bump a version here and nowhere else, then run `python scripts/refresh-upstream.py` and the tests: the facts it
records in components/upstream/ (chart coordinates, IAM reference policies, AMI releases, vLLM's flags) are what
the tests hold the program to.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class HelmChart:
    """A chart as pulumi-kubernetes pulls it: an OCI chart is `chart="oci://registry/path/name"` with no
    repository (the provider treats a chart as OCI only when `chart` itself starts with `oci://`,
    pulumi/pulumi-kubernetes#2158); an index chart is its name plus the repository URL serving index.yaml."""

    chart: str
    version: str
    repository: str | None = None

    @property
    def name(self) -> str:
        """The chart's own name (the last segment of an OCI reference), also used as the release name."""
        return self.chart.rsplit("/", 1)[-1]


KUBERNETES_VERSION = "1.34"
SUPPORTED_KUBERNETES_VERSIONS = ("1.32", "1.33", "1.34")

ELASTICACHE_REDIS_VERSION = "7.1"

AWS_LOAD_BALANCER_CONTROLLER = HelmChart(
    chart="aws-load-balancer-controller",
    version="1.14.0",
    repository="https://aws.github.io/eks-charts",
)

KARPENTER = HelmChart(chart="oci://public.ecr.aws/karpenter/karpenter", version="1.14.1")
KARPENTER_CRD = HelmChart(chart="oci://public.ecr.aws/karpenter/karpenter-crd", version=KARPENTER.version)
KEDA = HelmChart(chart="keda", version="2.20.2", repository="https://kedacore.github.io/charts")
KUBE_PROMETHEUS_STACK = HelmChart(
    chart="kube-prometheus-stack",
    version="82.18.0",
    repository="https://prometheus-community.github.io/helm-charts",
)
NVIDIA_DEVICE_PLUGIN = HelmChart(
    chart="nvidia-device-plugin",
    version="0.18.2",
    repository="https://nvidia.github.io/k8s-device-plugin",
)

# Karpenter nodes: dev follows the latest AL2023 release; prod pins an awslabs/amazon-eks-ami release (a tag
# vYYYYMMDD listing AMIs for KUBERNETES_VERSION) so its nodes never change under it.
GPU_AMI_ALIAS_DEV = "al2023@latest"
CPU_AMI_ALIAS_DEV = "al2023@latest"
GPU_AMI_ALIAS_PROD = "al2023@v20260714"
CPU_AMI_ALIAS_PROD = "al2023@v20260714"

VLLM_VERSION = "0.33.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
# The warm-capacity placeholder's container (kubernetes build/pause; non-root since 3.5; kubeadm's default sandbox
# image since Kubernetes 1.31).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
# The gateway image is not pinned here: each stack builds serving/Dockerfile and runs the digest it pushed
# (components/images.py), unless serving.gateway.image names an existing one.
