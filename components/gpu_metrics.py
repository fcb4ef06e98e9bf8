"""GPU hardware metrics: NVIDIA's dcgm-exporter on every GPU node, scraped by Prometheus.

Facts from NVIDIA/dcgm-exporter at tag 4.5.3-4.8.2 (the pinned chart 4.8.2): the DaemonSet serves port `metrics`
(9400) behind a Service labelled app.kubernetes.io/name=dcgm-exporter; the default counters
(etc/default-counters.csv) include DCGM_FI_DEV_GPU_UTIL, DCGM_FI_DEV_FB_USED/FREE, DCGM_FI_DEV_GPU_TEMP and
DCGM_FI_DEV_POWER_USAGE; each series names its node in `Hostname` (renamed `hostname` after this tag) and, with
DCGM_EXPORTER_KUBERNETES=true (the chart sets it), the pod using the GPU in `pod`/`namespace`/`container`.

On Bottlerocket's NVIDIA variant the release carries a workaround (`bottlerocket_values`); on AL2023 it does not.
"""

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import contracts
from components.helm import pinned_release
from components.nvidia import gpu_pool_placement
from components.observability import monitoring_object
from components.versions import DCGM_EXPORTER, DCGM_EXPORTER_IMAGE_REPOSITORY, DCGM_EXPORTER_IMAGE_TAG

DCGM_NAME = DCGM_EXPORTER.name
DCGM_NODE_LABEL = "Hostname"
DCGM_PORT_NAME = "metrics"


def dcgm_image() -> str:
    """The image the chart's DaemonSet runs with the values below (templates/daemonset.yaml: repository:tag)."""
    return f"{DCGM_EXPORTER_IMAGE_REPOSITORY}:{DCGM_EXPORTER_IMAGE_TAG}"


def bottlerocket_values() -> dict[str, Any]:
    """What the exporter needs on Bottlerocket NVIDIA nodes (facts and sources: components/upstream/bottlerocket.json,
    `dcgmExporter`; not yet verified on a node).

    GPU access: Bottlerocket gives the GPUs to a container that requests no nvidia.com/gpu only if it holds
    CAP_SYS_ADMIN (bottlerocket-os/bottlerocket#3992), not privileged. The chart's default securityContext has it;
    stated here so that a chart bump dropping it cannot silently blind the exporter.

    Start-up: on Bottlerocket 1.54+ the ld.so.cache the NVIDIA toolkit hook leaves in the container lacks
    libdcgm.so.4, and the exporter's start-up check exits "the libdcgm.so.4 library was not found"
    (NVIDIA/dcgm-exporter#636). The workaround documented there rebuilds the cache in a shell `command`, which chart
    4.8.2 cannot express (its DaemonSet template renders only `args` for the image's entrypoint). The least-bad option
    it can carry is the exporter's own switch for that check, DISABLE_STARTUP_VALIDATE (added for the same symptom:
    #553, #555); dlopen still finds the library on the default path (#724). Its cost: with the switch, NVML and
    collector failures are logged instead of fatal, so a broken exporter shows as missing DCGM_* series
    (docs/operations.md). No runtimeClassName: containerd there already runs every container with the nvidia
    runtime, and no RuntimeClass of that name exists."""
    return {
        "securityContext": {
            "runAsUser": 0,
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]},
        },
        "extraEnv": [{"name": "DISABLE_STARTUP_VALIDATE", "value": "true"}],
    }


def dcgm_values(ami_family: str) -> dict[str, Any]:
    """The release's values for GPU nodes of `ami_family` (Karpenter's alias family: al2023 or bottlerocket)."""
    return {
        **gpu_pool_placement(),
        "image": {"repository": DCGM_EXPORTER_IMAGE_REPOSITORY, "tag": DCGM_EXPORTER_IMAGE_TAG},
        # Our own ServiceMonitor below: the chart's would be applied before prometheus-operator's CRDs exist.
        "serviceMonitor": {"enabled": False},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        **(bottlerocket_values() if ami_family == "bottlerocket" else {}),
    }


def dcgm_monitor_spec() -> dict[str, Any]:
    """honorLabels keeps the exporter's pod/namespace (the pod using the GPU) instead of renaming them exported_*
    in favour of the exporter pod's own."""
    return {
        "namespaceSelector": {"matchNames": [contracts.MONITORING_NAMESPACE]},
        "selector": {"matchLabels": {contracts.APP_NAME_LABEL: DCGM_NAME}},
        "endpoints": [{"port": DCGM_PORT_NAME, "path": "/metrics", "interval": "15s", "honorLabels": True}],
    }


@dataclass(frozen=True)
class GpuMetricsArgs:
    kubernetes_provider: k8s.Provider
    # The metrics stack's release: namespace and ServiceMonitor CRD come with it.
    depends_on: list[pulumi.Resource]
    # The GPU pool's AMI family (al2023 or bottlerocket): Bottlerocket needs a start-up workaround.
    ami_family: str


class GpuMetrics(pulumi.ComponentResource):
    def __init__(self, name: str, args: GpuMetricsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:GpuMetrics", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=args.depends_on)
        values = dcgm_values(args.ami_family)
        # A DaemonSet: ready at once while the GPU pool is empty, an image pull per GPU node otherwise.
        pinned_release(name, DCGM_EXPORTER, contracts.MONITORING_NAMESPACE, values, on_cluster, timeout_s=600)
        monitoring_object(f"{name}-monitor", "ServiceMonitor", DCGM_NAME, dcgm_monitor_spec(), on_cluster)
        self.register_outputs({})
