"""Nodes: Karpenter NodePools and EC2NodeClasses (karpenter.sh/v1, karpenter.k8s.aws/v1), and the system node
group's launch template."""

import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from .common import HIGH, MEDIUM, duration_seconds, flag, get, items, number, of_type, resource_rule, stack_rule

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
GPU = "nvidia.com/gpu"
GPU_REQUIREMENT_KEYS = (
    "karpenter.k8s.aws/instance-gpu-manufacturer",
    "karpenter.k8s.aws/instance-gpu-count",
    "karpenter.k8s.aws/instance-gpu-name",
)
GPU_FAMILY = re.compile(r"^(g|p|gr)\d")


def _requirements(props: Mapping[str, Any]) -> list[Any]:
    return items(get(props, "spec", "template", "spec", "requirements"))


def _requirement_values(props: Mapping[str, Any], key: str) -> list[str]:
    return [str(v) for r in _requirements(props) if get(r, "key") == key for v in items(get(r, "values"))]


def is_gpu_pool(props: Mapping[str, Any]) -> bool:
    """A NodePool that launches GPU instances: by GPU requirements, GPU instance families or a GPU limit (so a pool
    whose taint was dropped is still recognised)."""
    if any(get(r, "key") in GPU_REQUIREMENT_KEYS for r in _requirements(props)):
        return True
    families = _requirement_values(props, "karpenter.k8s.aws/instance-family")
    categories = _requirement_values(props, "karpenter.k8s.aws/instance-category")
    return (
        any(GPU_FAMILY.match(f) for f in families)
        or any(c in ("g", "p") for c in categories)
        or get(props, "spec", "limits", GPU) is not None
    )


def _gpu_taint(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if not is_gpu_pool(props):
        return
    taints = items(get(props, "spec", "template", "spec", "taints"))
    if not any(get(t, "key") == GPU and get(t, "effect") == "NoSchedule" for t in taints):
        yield f"GPU pool has no {GPU}:NoSchedule taint: any pod can land on (and keep alive) a GPU node"


def _limits(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    limits = get(props, "spec", "limits", default={})
    if get(limits, "cpu") is None:
        yield "spec.limits.cpu is not set: the pool can grow without bound"
    if not is_gpu_pool(props):
        return
    gpus = number(get(limits, GPU))
    if gpus is None:
        yield f"GPU pool has no spec.limits['{GPU}']"
    elif gpus > settings["maxGpus"]:
        yield f"GPU limit {gpus:g} exceeds this stack's maximum of {settings['maxGpus']:g}"


def _metadata(props: Mapping[str, Any], args: Any) -> tuple[Any, Any]:
    """(httpTokens, hop limit), Karpenter's v1 defaults (required, 1) filled in for an EC2NodeClass."""
    if args.resource_type == NODE_CLASS:
        options = get(props, "spec", "metadataOptions", default={})
        return get(options, "httpTokens", default="required"), get(options, "httpPutResponseHopLimit", default=1)
    options = get(props, "metadataOptions", default={})
    return get(options, "httpTokens"), get(options, "httpPutResponseHopLimit")


def _imdsv2(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    tokens, hops = _metadata(props, args)
    if tokens != "required":
        yield f"IMDS httpTokens is {tokens!r}, not 'required' (IMDSv2 only)"
    if number(hops) != 1:
        yield f"IMDS hop limit is {hops!r}, not 1: pods could reach the node role's credentials"


def _root_volumes(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    path = ("spec", "blockDeviceMappings") if args.resource_type == NODE_CLASS else ("blockDeviceMappings",)
    mappings = items(get(props, *path))
    if args.resource_type == LAUNCH_TEMPLATE and not mappings:
        yield "no block device mapping: the root volume takes the AMI's (unencrypted) default"
    for mapping in mappings:
        if get(mapping, "ebs") is not None and not flag(get(mapping, "ebs", "encrypted")):
            yield f"EBS volume {get(mapping, 'deviceName')} is not encrypted"


def _ami_pinned(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if not settings["required"]:
        return
    for term in items(get(props, "spec", "amiSelectorTerms")):
        alias = get(term, "alias")
        if alias is not None and str(alias).endswith("@latest"):
            yield f"AMI alias {alias} follows every new release; pin a version (e.g. al2023@v20251120)"


def _gpu_pools(resources: list[PolicyResource]) -> list[PolicyResource]:
    return [pool for pool in of_type(resources, NODE_POOL) if is_gpu_pool(pool.props)]


def _on_demand_fallback(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if not settings["required"]:
        return
    pools = _gpu_pools(resources)
    if pools and not any("on-demand" in _requirement_values(p.props, "karpenter.sh/capacity-type") for p in pools):
        yield "no GPU pool may launch on-demand capacity: a Spot shortage leaves vLLM unscheduled", pools[0].urn


def _disruption(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if not is_gpu_pool(props):
        return
    disruption = get(props, "spec", "disruption", default={})
    policy = get(disruption, "consolidationPolicy", default="WhenEmptyOrUnderutilized")
    after = get(disruption, "consolidateAfter")
    seconds = duration_seconds(after)
    if policy == "WhenEmpty" or after == "Never":
        return
    if seconds is None or seconds < settings["minConsolidateAfterS"]:
        yield (
            f"consolidationPolicy {policy} with consolidateAfter {after!r}: Karpenter may consolidate a GPU node "
            f"while a multi-GB image is still pulling; use WhenEmpty or at least {settings['minConsolidateAfterS']:g} s"
        )


def _snapshot_images_reachable(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    """A data volume from an image snapshot is only worth its cost if containerd sees it, and reads it fast."""
    spec = get(props, "spec", default={})
    for mapping in items(get(spec, "blockDeviceMappings")):
        if get(mapping, "ebs", "snapshotID") is None:
            continue
        device = get(mapping, "deviceName")
        if get(spec, "instanceStorePolicy") == "RAID0":
            yield (
                f"{device} starts from an image snapshot, but instanceStorePolicy RAID0 makes Karpenter bind "
                "/var/lib/containerd to the empty instance store, hiding the snapshot's images"
            )
        if get(mapping, "ebs", "volumeInitializationRate") is None:
            yield (
                f"{device} starts from an image snapshot with no volumeInitializationRate: its blocks load lazily "
                "from S3 on first read, and a multi-GB image can take minutes to start "
                "(aws-samples/bottlerocket-images-cache#13)"
            )
        if "snapshotter" in str(get(spec, "userData", default="")):
            yield f"{device} starts from an image snapshot, but userData changes containerd's snapshotter, which " \
                "wipes /var/lib/containerd on Bottlerocket (bottlerocket-core-kit #580)"


NODE_RULES = [
    resource_rule(
        "karpenter-gpu-taint",
        "GPU NodePools carry the nvidia.com/gpu:NoSchedule taint, so only GPU workloads run there.",
        types=(NODE_POOL,),
        severity=HIGH,
        remediation="Add taints [{key: nvidia.com/gpu, value: 'true', effect: NoSchedule}] to the pool template; "
        "GPU pods tolerate it.",
        check=_gpu_taint,
    ),
    resource_rule(
        "karpenter-limits",
        "Every NodePool limits its CPU, and GPU pools their GPUs, within the stack's maximum.",
        types=(NODE_POOL,),
        severity=HIGH,
        remediation="Set spec.limits (addons.karpenter gpuLimit / cpuLimit).",
        check=_limits,
        config={"maxGpus": {"type": "number", "default": 16, "description": "Largest GPU limit of one pool"}},
    ),
    resource_rule(
        "nodes-imdsv2",
        "Nodes require IMDSv2 with a hop limit of 1 (pods cannot reach the node's instance credentials).",
        types=(NODE_CLASS, LAUNCH_TEMPLATE),
        severity=HIGH,
        remediation="metadataOptions: httpTokens required, httpPutResponseHopLimit 1.",
        check=_imdsv2,
    ),
    resource_rule(
        "nodes-root-volume-encrypted",
        "Node root volumes are encrypted EBS volumes.",
        types=(NODE_CLASS, LAUNCH_TEMPLATE),
        severity=HIGH,
        remediation="Set blockDeviceMappings[].ebs.encrypted true.",
        check=_root_volumes,
    ),
    resource_rule(
        "karpenter-ami-pinned",
        "Where the stack requires it (prod), EC2NodeClasses pin an AMI release instead of following @latest.",
        types=(NODE_CLASS,),
        severity=MEDIUM,
        remediation="Use amiSelectorTerms alias al2023@v<YYYYMMDD> naming an awslabs/amazon-eks-ami release.",
        check=_ami_pinned,
        config={"required": {"type": "boolean", "default": True, "description": "false in dev"}},
    ),
    stack_rule(
        "karpenter-gpu-on-demand-fallback",
        "Where the stack requires it (prod), some GPU pool may fall back to on-demand capacity.",
        severity=HIGH,
        remediation="Allow karpenter.sh/capacity-type [spot, on-demand] (Karpenter prefers Spot) or add an "
        "on-demand GPU pool with a lower weight.",
        check=_on_demand_fallback,
        config={"required": {"type": "boolean", "default": True, "description": "false in dev"}},
    ),
    resource_rule(
        "nodes-snapshot-images-reachable",
        "A node class whose data volume starts from an image snapshot lets containerd see the images and read them "
        "at a provisioned rate.",
        types=(NODE_CLASS,),
        severity=MEDIUM,
        remediation="Leave instanceStorePolicy unset (bind only /var/lib/kubelet and /var/log/pods to the instance "
        "store), set ebs.volumeInitializationRate (100-300 MiB/s), keep containerd's default snapshotter.",
        check=_snapshot_images_reachable,
    ),
    resource_rule(
        "karpenter-gpu-disruption",
        "GPU pools are never consolidated while an image may still be pulling (karpenter-provider-aws#7414).",
        types=(NODE_POOL,),
        severity=MEDIUM,
        remediation="disruption.consolidationPolicy WhenEmpty, or consolidateAfter of at least 15m.",
        check=_disruption,
        config={"minConsolidateAfterS": {"type": "number", "default": 900}},
    ),
]
