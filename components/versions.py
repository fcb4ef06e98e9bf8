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


# EKS bills a version past its standard support at $0.60 instead of $0.10 per cluster-hour (components/prices/), so
# config accepts only versions in standard support for at least STANDARD_SUPPORT_HORIZON_DAYS after the facts were
# checked (components/upstream/aws.json; tests/test_kubernetes_version.py holds it). 1.34 left that set: its standard
# support ends 2026-12-02, and an existing 1.34 cluster moves to 1.35 in one step.
KUBERNETES_VERSION = "1.35"
SUPPORTED_KUBERNETES_VERSIONS = ("1.35",)
STANDARD_SUPPORT_HORIZON_DAYS = 60

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
# NVIDIA/dcgm-exporter deployment/ at tag 4.5.3-4.8.2 (chart version 4.8.2, image tag 4.5.3-4.8.2-distroless).
DCGM_EXPORTER = HelmChart(
    chart="dcgm-exporter",
    version="4.8.2",
    repository="https://nvidia.github.io/dcgm-exporter/helm-charts",
)
# The chart's own default image at that tag (deployment/values.yaml image.repository and image.tag; the DaemonSet
# template runs "<repository>:<tag>"), set explicitly so the prefetched-image list (stacks/gpu_images.py) names it.
DCGM_EXPORTER_IMAGE_REPOSITORY = "nvcr.io/nvidia/k8s/dcgm-exporter"
DCGM_EXPORTER_IMAGE_TAG = "4.5.3-4.8.2-distroless"

# aws/eks-charts stable/aws-for-fluent-bit at commit 2942cdc (chart 0.2.0, AWS for Fluent Bit 3.2.1).
AWS_FOR_FLUENT_BIT = HelmChart(
    chart="aws-for-fluent-bit",
    version="0.2.0",
    repository="https://aws.github.io/eks-charts",
)

# open-telemetry/opentelemetry-helm-charts tag opentelemetry-collector-0.170.0 (appVersion 0.158.0, the image tag).
OPENTELEMETRY_COLLECTOR = HelmChart(
    chart="opentelemetry-collector",
    version="0.170.0",
    repository="https://open-telemetry.github.io/opentelemetry-helm-charts",
)
# The contrib distribution: it has the awsxray exporter; the chart requires image.repository to be set.
OTEL_COLLECTOR_IMAGE_REPOSITORY = "otel/opentelemetry-collector-contrib"

# Karpenter nodes: dev follows the latest AL2023 release; prod pins releases so its nodes never change under it:
# its CPU nodes an awslabs/amazon-eks-ami release (a tag vYYYYMMDD listing AMIs for KUBERNETES_VERSION), its GPU
# nodes a bottlerocket-os/bottlerocket release with aws-k8s-<KUBERNETES_VERSION>-nvidia variants (Karpenter picks
# the -nvidia AMI for GPU instance types), whose data volume a snapshot of prefetched images can fill
# (components/upstream/bottlerocket.json).
GPU_AMI_ALIAS_DEV = "al2023@latest"
CPU_AMI_ALIAS_DEV = "al2023@latest"
GPU_AMI_ALIAS_PROD = "bottlerocket@v1.68.1"
CPU_AMI_ALIAS_PROD = "al2023@v20260714"

VLLM_VERSION = "0.33.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
# The compile cache's sync containers (components/compile_cache.py): aws/aws-cli tag 2.36.7 (2026-07-23), published
# as public.ecr.aws/aws-cli/aws-cli:<CLI version> (AWS CLI user guide, "Use specific versions and tags"); its
# docker/Dockerfile at that tag builds on amazonlinux:2023 with ENTRYPOINT aws (components/upstream/images.json).
AWS_CLI_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.36.7"
# The warm-capacity placeholder's container (kubernetes build/pause; non-root since 3.5; kubeadm's default sandbox
# image since Kubernetes 1.31).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
# The gateway image is not pinned here: each stack builds serving/Dockerfile and runs the digest it pushed
# (components/images.py), unless serving.gateway.image names an existing one.
