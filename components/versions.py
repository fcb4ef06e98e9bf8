"""Every external version the platform deploys, pinned in one place.

Bump a version here and nowhere else; the tests assert that workloads and charts read from this module.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class HelmChart:
    chart: str
    version: str
    repository: str


KUBERNETES_VERSION = "1.34"
SUPPORTED_KUBERNETES_VERSIONS = ("1.32", "1.33", "1.34")

ELASTICACHE_REDIS_VERSION = "7.1"

AWS_LOAD_BALANCER_CONTROLLER = HelmChart(
    chart="aws-load-balancer-controller",
    version="1.14.0",
    repository="https://aws.github.io/eks-charts",
)

KARPENTER = HelmChart(
    chart="karpenter",
    version="1.14.1",
    repository="oci://public.ecr.aws/karpenter",
)
KARPENTER_CRD = HelmChart(
    chart="karpenter-crd",
    version=KARPENTER.version,
    repository=KARPENTER.repository,
)
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

# Karpenter GPU nodes: dev follows the latest AL2023 release; prod pins one so nodes never change under it.
GPU_AMI_ALIAS_DEV = "al2023@latest"
GPU_AMI_ALIAS_PROD = "al2023@v20251117"

VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
# The gateway image is built from serving/Dockerfile and pushed by the release process; tag = project version.
GATEWAY_IMAGE_REPOSITORY = "ghcr.io/llm-platform/gateway"
GATEWAY_IMAGE_TAG = "0.1.0"
