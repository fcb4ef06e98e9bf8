"""Warm GPU capacity on a schedule: a low-priority placeholder Deployment on the GPU pool, scaled by a KEDA cron
trigger, keeps a GPU node up (with the vLLM image already pulled) during the hours traffic is expected. A new
vLLM pod preempts the placeholder and starts on that node without waiting for a node launch or an image pull;
outside the schedule the placeholder has no replicas and the pool can empty."""

from dataclasses import dataclass, field
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components import contracts
from components.config_base import StrictModel
from components.kube import as_manifest, autoscaled
from components.versions import PAUSE_IMAGE, VLLM_IMAGE
from components.vllm import PAUSED_REPLICAS_ANNOTATION

PLACEHOLDER_NAME = "gpu-warm-placeholder"
# Its own namespace: not a serving workload (no PodDisruptionBudget may hold a drain up for it). Priority
# preemption is cluster-wide, so vLLM pods in llm-serving still preempt it.
NAMESPACE = "warm-capacity"
# Below every workload's priority (0 by default): the scheduler preempts placeholders for any pending pod; the
# placeholder itself never preempts anything.
PLACEHOLDER_PRIORITY = -10
# Five cron fields: the KEDA cron scaler parses start and end with robfig/cron's minute-hour-dom-month-dow parser
# (kedacore/keda pkg/scalers/cron_scaler.go, cronMetadata.Validate, at v2.20).
CRON_FIELDS = r"^\S+( \S+){4}$"
PAUSE_USER = 65535  # the pause image's non-root user (kubernetes build/pause, since 3.5)


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone like America/Los_Angeles") from None
    return value


class WarmCapacityConfig(StrictModel):
    """`serving.warmCapacity`: GPU nodes kept up between `start` and `end` (cron, in `timezone`)."""

    enabled: bool = False
    timezone: str = Field(default="UTC", description="IANA time zone of the schedule.")
    start: str = Field(default="0 8 * * 1-5", pattern=CRON_FIELDS, description="Cron: when nodes come up.")
    end: str = Field(default="0 18 * * 1-5", pattern=CRON_FIELDS, description="Cron: when they may go.")
    replicas: int = Field(default=1, ge=1, le=16, description="Placeholders, each holding one vLLM pod's GPUs.")

    @model_validator(mode="after")
    def valid_zone(self) -> Self:
        _time_zone(self.timezone)
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start!r}: the window would be empty")
        return self


def cron_trigger(config: WarmCapacityConfig) -> dict[str, Any]:
    """Metadata keys of KEDA's cron scaler (cronMetadata in kedacore/keda pkg/scalers/cron_scaler.go at v2.20)."""
    return {
        "type": "cron",
        "metadata": {
            "timezone": config.timezone,
            "start": config.start,
            "end": config.end,
            "desiredReplicas": str(config.replicas),
        },
    }


def placeholder_pod(gpus_per_pod: int, vllm_image: pulumi.Input[str], sync_image: str | None = None) -> dict[str, Any]:
    """One GPU's worth of nothing: the pause container holds the GPU; an init container pulls the vLLM image onto
    the node (it exits at once), so the vLLM pod that preempts the placeholder finds the image there; likewise the
    compile cache's sync image, when the vLLM pods have one."""
    locked_down = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    small = {"cpu": "10m", "memory": "16Mi"}
    return {
        "priorityClassName": PLACEHOLDER_NAME,
        # Preemption waits for the victim's grace period: the placeholder has nothing to drain.
        "terminationGracePeriodSeconds": 0,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": {contracts.POOL_LABEL_KEY: contracts.GPU_POOL},
        "tolerations": [{**contracts.GPU_TAINT, "operator": "Equal"}],
        "initContainers": [{
            "name": "pull-vllm-image",
            "image": vllm_image,
            "command": ["true"],
            "resources": {"requests": small, "limits": small},
            "securityContext": locked_down,
        }, *([{
            "name": "pull-sync-image",
            "image": sync_image,
            "command": ["true"],
            "resources": {"requests": small, "limits": small},
            "securityContext": {**locked_down, "readOnlyRootFilesystem": True},
        }] if sync_image else [])],
        "containers": [{
            "name": "pause",
            "image": PAUSE_IMAGE,
            # The image has nothing to serve; `/pause -v` prints its version and exits 0 while the container runs.
            "readinessProbe": {"exec": {"command": ["/pause", "-v"]}, "periodSeconds": 60},
            "livenessProbe": {"exec": {"command": ["/pause", "-v"]}, "periodSeconds": 60},
            "resources": {
                "requests": {**small, "nvidia.com/gpu": str(gpus_per_pod)},
                "limits": {**small, "nvidia.com/gpu": str(gpus_per_pod)},
            },
            "securityContext": {**locked_down, "runAsNonRoot": True, "runAsUser": PAUSE_USER,
                                "readOnlyRootFilesystem": True},
        }],
    }


@dataclass(frozen=True)
class WarmCapacityArgs:
    config: WarmCapacityConfig
    gpus_per_pod: int  # vLLM's: a placeholder frees exactly what one vLLM pod needs
    kubernetes_provider: k8s.Provider
    # No model published yet (vLLM's own autoscaler is paused): no GPU node is kept warm for nothing.
    paused: bool = False
    vllm_image: pulumi.Input[str] = VLLM_IMAGE  # exactly what the vLLM pods pull
    sync_image: str | None = None  # the vLLM pods' compile-cache sync image, if they have one
    crd_providers: list[pulumi.Resource] = field(default_factory=list)
    capacity: list[pulumi.Resource] = field(default_factory=list)


class WarmCapacity(pulumi.ComponentResource):
    def __init__(self, name: str, args: WarmCapacityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:WarmCapacity", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider)
        labels = {contracts.APP_NAME_LABEL: PLACEHOLDER_NAME}
        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": NAMESPACE}, opts=on_cluster)
        priority = k8s.scheduling.v1.PriorityClass(
            f"{name}-priority",
            metadata={"name": PLACEHOLDER_NAME},
            value=PLACEHOLDER_PRIORITY,
            preemption_policy="Never",
            global_default=False,
            description="GPU placeholders: any pending pod preempts them.",
            opts=on_cluster,
        )
        metadata: Any = {"name": PLACEHOLDER_NAME, "namespace": namespace.metadata.name, "labels": labels}
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec=as_manifest({
                "replicas": 0,  # KEDA's cron trigger sets it inside the schedule
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": placeholder_pod(args.gpus_per_pod, args.vllm_image, args.sync_image),
                },
            }),
            opts=autoscaled(pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=[priority, *args.capacity])
            )),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-scaledobject",
            api_version="keda.sh/v1alpha1",
            kind="ScaledObject",
            metadata={**metadata, "annotations": {PAUSED_REPLICAS_ANNOTATION: "0"} if args.paused else {}},
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": PLACEHOLDER_NAME},
                "minReplicaCount": 0,
                "maxReplicaCount": args.config.replicas,
                "triggers": [cron_trigger(args.config)],
            },
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=args.crd_providers)),
        )
        self.register_outputs({})

