"""Stack-level rules over dependencies and options: deploy order, data safety and cost."""

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from .common import HIGH, MEDIUM, get, number, of_type, stack_rule, waits_for
from .nodes import NODE_POOL, is_gpu_pool
from .scaling import HPA, KEDA_DEFAULT_MAX, SCALED_OBJECT
from .workloads import DEPLOYMENT, GPU, INGRESS, SERVICE, containers

RELEASE = "kubernetes:helm.sh/v3:Release"


def _chart(release: PolicyResource) -> str:
    """A release's chart name (`oci://public.ecr.aws/karpenter/karpenter-crd` -> `karpenter-crd`)."""
    return str(get(release.props, "chart", default="")).rstrip("/").rsplit("/", 1)[-1]


def _api_group(resource_type: str) -> str | None:
    """`kubernetes:karpenter.sh/v1:NodePool` -> `karpenter.sh`."""
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        return None
    return parts[1].split("/", 1)[0]


def _waits_for_chart(resource: PolicyResource, resources: list[PolicyResource], charts: list[str]) -> bool:
    waited = waits_for(resource, resources)
    return any(_chart(r) in charts for r in of_type(resources, RELEASE) if r.urn in waited)


def _crd_order(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    providers: Mapping[str, Any] = settings["crdCharts"]
    for resource in resources:
        group = _api_group(resource.resource_type) or ""
        if group in providers and not _waits_for_chart(resource, resources, list(providers[group])):
            yield (
                f"{resource.resource_type.rsplit(':', 1)[-1]} {resource.name} does not wait for the release that "
                f"installs its CRD ({' or '.join(providers[group])})", resource.urn
            )


def _is_load_balanced(resource: PolicyResource) -> bool:
    if resource.resource_type == SERVICE:
        return get(resource.props, "spec", "type") == "LoadBalancer"
    annotations = get(resource.props, "metadata", "annotations", default={})
    ingress_class = get(resource.props, "spec", "ingressClassName",
                        default=get(annotations, "kubernetes.io/ingress.class"))
    return ingress_class == "alb"


def _controller_order(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    charts = list(settings["controllerCharts"])
    for resource in filter(_is_load_balanced, of_type(resources, INGRESS, SERVICE)):
        if not _waits_for_chart(resource, resources, charts):
            yield (
                f"{resource.name} does not wait for the load balancer controller ({' or '.join(charts)}): its "
                "webhooks (failurePolicy Fail) reject objects created before the controller is ready",
                resource.urn,
            )


def _protected(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if not settings["required"]:
        return
    for resource in of_type(resources, *settings["types"]):
        if not resource.opts.protect:
            yield f"{resource.resource_type.rsplit(':', 1)[-1]} {resource.name} is not protected", resource.urn


def _max_pods(deployment: PolicyResource, resources: list[PolicyResource]) -> float:
    """The most replicas a Deployment can reach: its autoscaler's maximum, else its replica count."""
    name = get(deployment.props, "metadata", "name")
    for scaler in of_type(resources, SCALED_OBJECT, HPA):
        if get(scaler.props, "spec", "scaleTargetRef", "name") == name:
            key = "maxReplicaCount" if scaler.resource_type == SCALED_OBJECT else "maxReplicas"
            return number(get(scaler.props, "spec", key), KEDA_DEFAULT_MAX) or 0
    return number(get(deployment.props, "spec", "replicas"), 1) or 0


def peak_gpus(resources: list[PolicyResource]) -> float:
    """GPUs the stack can run at once: GPU Deployments at their maximum replicas, capped by the GPU pools'
    limits where every GPU pool has one."""
    wanted = 0.0
    for deployment in of_type(resources, DEPLOYMENT):
        per_pod = sum(number(get(c, "resources", "limits", GPU), 0) or 0
                      for c in containers(deployment.props, DEPLOYMENT, init=False))
        wanted += per_pod * _max_pods(deployment, resources)
    limits = [number(get(pool.props, "spec", "limits", GPU)) for pool in of_type(resources, NODE_POOL)
              if is_gpu_pool(pool.props)]
    if limits and all(limit is not None for limit in limits):
        wanted = min(wanted, sum(limit for limit in limits if limit is not None))
    return wanted


def _cost(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, None]]:
    projected = number(settings.get("projectedMonthlyUsd"))
    budget = number(settings.get("monthlyBudgetUsd"))
    if projected is not None and budget is not None and projected > budget:
        yield f"projected monthly cost {projected:,.0f} USD exceeds the budget of {budget:,.0f} USD", None
    gpus = peak_gpus(resources)
    peak = gpus * settings["gpuHourlyUsd"]
    if peak > settings["maxGpuHourlyUsd"]:
        yield (
            f"at maximum scale {gpus:g} GPUs cost {peak:.2f} USD/hour ({peak * 730:,.0f} USD/month), above this "
            f"stack's bound of {settings['maxGpuHourlyUsd']:.2f} USD/hour", None
        )


STATEFUL_TYPES = ["aws:s3/bucket:Bucket", "aws:kms/key:Key", "aws:elasticache/replicationGroup:ReplicationGroup"]

STACK_RULES = [
    stack_rule(
        "order-crds-before-custom-resources",
        "Custom resources wait for the Helm release that installs their CRD and webhooks.",
        severity=HIGH,
        remediation="depends_on the release (e.g. NodePools on karpenter-crd, ScaledObjects on keda, "
        "ServiceMonitors on kube-prometheus-stack); without it the first `pulumi up` fails on an empty cluster.",
        check=_crd_order,
        config={"crdCharts": {"type": "object", "default": {
            "karpenter.sh": ["karpenter-crd", "karpenter"],
            "karpenter.k8s.aws": ["karpenter-crd", "karpenter"],
            "keda.sh": ["keda"],
            "monitoring.coreos.com": ["kube-prometheus-stack"],
        }}},
    ),
    stack_rule(
        "order-ingress-after-lb-controller",
        "ALB Ingresses and LoadBalancer Services wait for the AWS Load Balancer Controller release.",
        severity=HIGH,
        remediation="depends_on the controller's Helm release: its webhooks reject an Ingress created before its "
        "pods are ready, and pulumi-kubernetes does not retry.",
        check=_controller_order,
        config={"controllerCharts": {"type": "array", "items": {"type": "string"},
                                     "default": ["aws-load-balancer-controller"]}},
    ),
    stack_rule(
        "protect-stateful-resources",
        "Where the stack requires it (prod), stateful resources (model bucket, KMS keys, Redis) are protected.",
        severity=HIGH,
        remediation="Set protect=True on them; `pulumi state unprotect` first when deleting on purpose.",
        check=_protected,
        config={
            "required": {"type": "boolean", "default": True, "description": "false in dev"},
            "types": {"type": "array", "items": {"type": "string"}, "default": STATEFUL_TYPES},
        },
    ),
    stack_rule(
        "cost-within-budget",
        "The stack's GPU spend at maximum scale stays within its bound, and the projected monthly cost (when the "
        "cost model supplies projectedMonthlyUsd) within the budget.",
        severity=MEDIUM,
        remediation="Lower serving.scaling.maxReplicas or addons.karpenter gpuLimit, or raise the bound and "
        "budget in this stack's policy config.",
        check=_cost,
        config={
            "gpuHourlyUsd": {"type": "number", "default": 0.9, "description": "Price of one GPU-hour"},
            "maxGpuHourlyUsd": {"type": "number", "default": 6, "description": "Bound on peak GPU spend per hour"},
            "monthlyBudgetUsd": {"type": "number", "default": 1500},
            "projectedMonthlyUsd": {"type": "number", "description": "Written by the cost model, when run"},
        },
    ),
]
