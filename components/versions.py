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
