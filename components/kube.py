"""Building blocks shared by the platform's Kubernetes workloads: typed quantities, pinned images, container
resources, restricted security contexts, HTTP probes and CPU autoscaling."""

import re
from typing import Annotated, Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import AfterValidator, Field

from components import contracts
from components.config_base import StrictModel

QUANTITY_PATTERN = r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$"
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN)]
_QUANTITY_UNITS = {"": 1.0, "m": 1e-3, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}
DNS_LABEL = r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
# The numeric user of the gateway image (serving/Dockerfile); numeric so runAsNonRoot can verify it.
RUN_AS_USER = 10001


def _pinned_image(value: str) -> str:
    name, _, tag = value.rpartition(":")
    if "@sha256:" in value or (name and "/" not in tag and tag and tag != "latest"):
        return value
    raise ValueError("image must be pinned to a tag other than 'latest' or a digest, like repo/app:1.2.3")


PinnedImage = Annotated[str, AfterValidator(_pinned_image)]


def quantity_value(quantity: str) -> float:
    """A validated Quantity as a plain number (bytes, for memory)."""
    match = re.fullmatch(QUANTITY_PATTERN[1:-1], quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a quantity like 512Mi or 250m")
    unit = match.group(2) or ""
    return float(quantity.removesuffix(unit)) * _QUANTITY_UNITS[unit]


class Resources(StrictModel):
    cpu_request: Quantity
    memory_request: Quantity
    cpu_limit: Quantity
    memory_limit: Quantity

    def as_kubernetes(self, extra: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Container `resources`; `extra` (e.g. GPUs) goes into both requests and limits."""
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request, **(extra or {})},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit, **(extra or {})},
        }


SMALL_CPU_SERVICE = Resources(cpu_request="250m", memory_request="256Mi", cpu_limit="1", memory_limit="512Mi")


def as_manifest(value: dict[str, Any]) -> Any:
    """A manifest fragment for a typed SDK argument (its TypedDicts do not model nested plain dicts)."""
    return value


def autoscaled(opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """Options of a Deployment whose replica count an autoscaler (HPA or KEDA) owns: Pulumi sets `replicas` at
    creation only, so a later `pulumi up` never resets what the autoscaler chose."""
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["spec.replicas"]))


def restricted_pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def cpu_hpa(
    resource_name: str, workload: str, namespace: pulumi.Input[str], labels: dict[str, str],
    min_replicas: int, max_replicas: int, cpu_percent: int, opts: pulumi.ResourceOptions,
) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
    """An HPA on average CPU utilisation of a Deployment named `workload`."""
    return k8s.autoscaling.v2.HorizontalPodAutoscaler(
        resource_name,
        metadata=as_manifest({"name": workload, "namespace": namespace, "labels": labels}),
        spec=as_manifest({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {"type": "Resource",
                 "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}
            ],
        }),
        opts=opts,
    )


def one_at_a_time_budget(
    resource_name: str, metadata: Any, labels: dict[str, str], opts: pulumi.ResourceOptions
) -> k8s.policy.v1.PodDisruptionBudget:
    """A node drain (Karpenter consolidation, a node group update) takes at most one of these pods at a time."""
    return k8s.policy.v1.PodDisruptionBudget(
        resource_name,
        metadata=metadata,
        spec=as_manifest({"maxUnavailable": 1, "selector": {"matchLabels": labels}}),
        opts=opts,
    )


def cpu_pod_spec(container: dict[str, Any], grace_s: int, volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """Pod spec of a CPU workload: CPU pool, restricted security, spread over zones."""
    return {
        "nodeSelector": {contracts.POOL_LABEL_KEY: contracts.CPU_POOL},
        "securityContext": restricted_pod_security(),
        "terminationGracePeriodSeconds": grace_s,
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": {contracts.APP_NAME_LABEL: container["name"]}}}
        ],
        "containers": [container],
        "volumes": volumes,
    }


def http_probes(port: str | int, liveness_path: str, readiness_path: str) -> dict[str, Any]:
    return {
        "startupProbe": {"httpGet": {"path": liveness_path, "port": port}, "periodSeconds": 2,
                         "failureThreshold": 30},
        "readinessProbe": {"httpGet": {"path": readiness_path, "port": port}, "periodSeconds": 5,
                           "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": liveness_path, "port": port}, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 3},
    }
