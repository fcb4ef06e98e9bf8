"""NVIDIA's device plugin, which advertises `nvidia.com/gpu` on GPU nodes whose AMI does not ship one (AL2023;
Bottlerocket's NVIDIA variant has its own, so the platform skips this component there)."""

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import contracts
from components.helm import pinned_release
from components.versions import NVIDIA_DEVICE_PLUGIN

DEVICE_PLUGIN_NAMESPACE = "kube-system"


def gpu_pool_placement() -> dict[str, Any]:
    """Helm values that put a DaemonSet on the GPU pool only, tolerating its taint. Charts' default affinities
    want node-feature-discovery labels that Karpenter's nodes do not carry, so the pool label replaces them."""
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": contracts.POOL_LABEL_KEY, "operator": "In", "values": [contracts.GPU_POOL]}
                            ]
                        }
                    ]
                }
            }
        },
        "tolerations": [{**contracts.GPU_TAINT, "operator": "Equal"}],
    }


def device_plugin_values() -> dict[str, object]:
    return {
        **gpu_pool_placement(),
        "priorityClassName": "system-node-critical",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }


@dataclass(frozen=True)
class NvidiaArgs:
    kubernetes_provider: k8s.Provider
    # The system node group and the Pod Identity agent: what its pods need to run and get AWS credentials.
    system_ready: list[pulumi.Resource]


class NvidiaDevicePlugin(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: NvidiaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:NvidiaDevicePlugin", name, None, opts)
        self.release = pinned_release(
            name,
            NVIDIA_DEVICE_PLUGIN,
            DEVICE_PLUGIN_NAMESPACE,
            device_plugin_values(),
            pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=args.system_ready),
            # A DaemonSet on GPU nodes only: none exist at install, so it is ready at once; upgrades roll per node.
            timeout_s=300,
        )
        self.register_outputs({})
