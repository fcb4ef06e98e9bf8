"""Prices a stack's resource graph (what `llm-platform preview --json` writes) with the catalog, taking the GPU
pool's node-hours and the traffic-driven usage from a simulation.

Every resource type is priced by a rule below or listed in FREE with the reason; any other type is reported as
unpriced (never silently left out). Monthly means 730 hours; a simulated week is scaled by 730 / 168.
"""

import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from components import upstream
from components.images import KEEP_IMAGES
from components.kube import quantity_value
from components.pricing import HOURS_PER_MONTH, Catalog, InstanceSpec, UnpricedError, ceil_div
from infra.cost.simulator import HOUR_S, SimResult

GIB = 2.0**30
# Usage assumptions, each an estimate to replace with measured figures (docs/cost.md):
CONTROL_PLANE_LOG_GB_PER_TYPE = 1.0  # EKS control-plane log ingestion per enabled log type per month
FLOW_LOG_GB_PER_SUBNET = 1.0  # VPC flow-log baseline per private subnet per month
FLOW_LOG_BYTES_PER_REQUEST = 300  # one flow record each way per ALB connection
BYTES_PER_TOKEN = 4  # JSON text per token, both directions
HTTP_OVERHEAD_BYTES = 1500
# A python:slim-based service image (the gateway, the example app) is a few hundred MB compressed.
IMAGE_GB = 0.3
PULL_THROUGH_RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
# A snapshot of a data volume holds the image twice: its compressed layers and their unpacked files. vLLM 0.33.0's
# wheel unpacks from 336 MB to 877 MB (2.6x); 2.5 is taken for the whole image (an estimate).
UNPACKED_PER_COMPRESSED_GB = 2.5
MODEL_VERSIONS_KEPT = 2  # the served version and one noncurrent (lifecycle rule keeps noncurrent a while)

FREE = {
    "aws:acm/certificate:Certificate": "public ACM certificates are free",
    "aws:acm/certificateValidation:CertificateValidation": "a wait for the certificate to be issued",
    "aws:route53/record:Record": "records in the user's zone; alias queries to an ALB are free (Route 53 pricing)",
    "aws:cloudwatch/eventRule:EventRule": "rules for AWS service events carry no charge",
    "aws:cloudwatch/eventTarget:EventTarget": "part of its rule",
    "aws:dynamodb/table:Table": "the model registry: a few KB and a handful of on-demand writes per release",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": "repository setting",
    "docker-build:index:Image": "built on the deployer's machine; its layers are priced on its ECR repository",
    "aws:ec2/flowLog:FlowLog": "its records are billed on the log group it writes to",
    "aws:ec2/internetGateway:InternetGateway": "no charge (data transfer is priced on the ALB)",
    "aws:ec2/launchTemplate:LaunchTemplate": "its volumes are priced with the node group that uses it",
    "aws:ec2/routeTable:RouteTable": "no charge",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "no charge",
    "aws:ec2/securityGroup:SecurityGroup": "no charge",
    "aws:ec2/subnet:Subnet": "no charge",
    "aws:ec2/tag:Tag": "no charge",
    "aws:ec2/vpc:Vpc": "no charge",
    "aws:eks/accessEntry:AccessEntry": "no charge",
    "aws:eks/addon:Addon": "EKS add-ons carry no charge; their pods run on priced nodes",
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": "no charge",
    "aws:elasticache/subnetGroup:SubnetGroup": "no charge",
    "aws:iam/role:Role": "IAM is free",
    "aws:iam/rolePolicy:RolePolicy": "IAM is free",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "IAM is free",
    "aws:kms/alias:Alias": "aliases are free; the key is priced",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": "bucket setting",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": "bucket setting",
    "aws:s3/bucketPolicy:BucketPolicy": "bucket setting",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "bucket setting",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": "bucket setting",
    "aws:s3/bucketVersioning:BucketVersioning": "bucket setting (the kept versions are priced on the bucket)",
    "aws:secretsmanager/secretVersion:SecretVersion": "billed per secret, not per version",
    "aws:sqs/queue:Queue": "Karpenter's interruption queue stays inside SQS's 1 million free requests a month",
    "aws:sqs/queuePolicy:QueuePolicy": "no charge",
    "random:index/randomPassword:RandomPassword": "local to Pulumi",
    "random:index/randomString:RandomString": "local to Pulumi",
}
# Whole families: component groupings, providers, and Kubernetes objects (which run on nodes priced elsewhere;
# the NodePools and the ALB-backed Ingress are priced by their own rules).
FREE_PREFIXES = {
    "llm-platform:components:": "a grouping of priced children",
    "pulumi:providers:": "a provider, not a cloud resource",
    "kubernetes:": "runs on the system nodes or the node pools, which are priced",
}


@dataclass(frozen=True)
class Usage:
    """A month of traffic, from a simulation of the stack's profile."""

    requests: float
    gpu_requests: float
    gpu_tokens: float
    gpu_node_hours: float
    gpu_node_launches: float
    hourly_requests: list[float]  # requests in each hour of a 730-hour month, in profile order
    prompt_tokens: float
    output_tokens: float

    @classmethod
    def from_simulation(cls, result: SimResult, hourly_rates: list[float]) -> "Usage":
        scale = HOURS_PER_MONTH * HOUR_S / result.horizon_s
        gpu_requests = result.served * scale
        tokens_per_request = (result.prompt_tokens + result.output_tokens) / max(result.served, 1)
        return cls(
            requests=result.requests * scale,
            gpu_requests=gpu_requests,
            gpu_tokens=(result.prompt_tokens + result.output_tokens) * scale,
            gpu_node_hours=result.gpu_node_hours * scale,
            gpu_node_launches=result.node_launches * scale,
            hourly_requests=[hourly_rates[h % len(hourly_rates)] * HOUR_S for h in range(HOURS_PER_MONTH)],
            prompt_tokens=result.prompt_tokens / max(result.served, 1),
            output_tokens=tokens_per_request - result.prompt_tokens / max(result.served, 1),
        )


@dataclass(frozen=True)
class Line:
    component: str
    resource: str
    type: str
    item: str
    fixed: float
    usage: float
    prices: tuple[str, ...]


@dataclass(frozen=True)
class Context:
    graph: dict[str, Any]
    catalog: Catalog
    usage: Usage
    model_gb: float
    image_gb: float
    huggingface: bool
    # The day the month priced starts: a Kubernetes version past its EKS standard support then bills extended.
    on: datetime.date = field(default_factory=datetime.date.today)

    def resources(self, type_token: str) -> list[dict[str, Any]]:
        return [r for r in self.graph["resources"] if r["type"] == type_token]

    def component(self, resource: dict[str, Any]) -> str:
        """The top-level component a resource belongs to (its outermost llm-platform component ancestor)."""
        by_urn = {r["urn"]: r for r in self.graph["resources"]}
        name = "stack"
        current_or_none: dict[str, Any] | None = resource
        while (current := current_or_none) is not None:
            if current["type"].startswith("llm-platform:components:"):
                name = current["name"]
            current_or_none = by_urn.get(current.get("parent") or "")
        return name


Rule = Callable[[dict[str, Any], Context], list[tuple[str, float, float, tuple[str, ...]]]]


@dataclass
class CostReport:
    stack: str
    region: str
    lines: list[Line]
    unpriced: list[str]
    budget: float
    usage: Usage
    gpu_node: str
    estimated_prices: list[str] = field(default_factory=list)  # catalog keys used that are estimates
    alert_base_usd: float = 0.0  # addons.observability.baseMonthlyUsd: the cost alert's "everything but GPUs"

    @property
    def fixed(self) -> float:
        return sum(line.fixed for line in self.lines)

    @property
    def variable(self) -> float:
        return sum(line.usage for line in self.lines)

    @property
    def total(self) -> float:
        return self.fixed + self.variable

    @property
    def gpu(self) -> float:
        return sum(line.fixed + line.usage for line in self.lines if line.item.startswith("GPU nodes"))

    def by_component(self) -> dict[str, tuple[float, float]]:
        totals: dict[str, tuple[float, float]] = {}
        for line in self.lines:
            fixed, usage = totals.get(line.component, (0.0, 0.0))
            totals[line.component] = (fixed + line.fixed, usage + line.usage)
        return dict(sorted(totals.items(), key=lambda item: -sum(item[1])))

    def per_thousand_requests(self) -> float:
        return self.total / (self.usage.requests / 1000) if self.usage.requests else math.inf

    def per_million_tokens(self) -> float:
        return self.total / (self.usage.gpu_tokens / 1e6) if self.usage.gpu_tokens else math.inf

    def gpu_per_million_tokens(self) -> float:
        return self.gpu / (self.usage.gpu_tokens / 1e6) if self.usage.gpu_tokens else math.inf

    def summary(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "region": self.region,
            "monthlyUsd": round(self.total, 2),
            "fixedUsd": round(self.fixed, 2),
            "usageUsd": round(self.variable, 2),
            "budgetUsd": self.budget,
            "headroomUsd": round(self.budget - self.total, 2),
            "gpuNode": self.gpu_node,
            "gpuNodeHours": round(self.usage.gpu_node_hours, 1),
            "requests": round(self.usage.requests),
            "usdPer1kRequests": round(self.per_thousand_requests(), 4),
            "usdPerMillionTokens": round(self.per_million_tokens(), 3),
            "gpuUsdPerMillionTokens": round(self.gpu_per_million_tokens(), 3),
            "components": {
                name: {"fixedUsd": round(fixed, 2), "usageUsd": round(usage, 2)}
                for name, (fixed, usage) in self.by_component().items()
            },
            "lines": [
                {"component": line.component, "resource": line.resource, "type": line.type, "item": line.item,
                 "fixedUsd": round(line.fixed, 2), "usageUsd": round(line.usage, 2), "prices": list(line.prices)}
                for line in self.lines
            ],
            "unpriced": self.unpriced,
            "estimatedPrices": self.estimated_prices,
            "alertBaseMonthlyUsd": self.alert_base_usd,
            "modelledNonGpuUsd": round(self.total - self.gpu, 2),
        }


# --- rules: one per billable type; each returns (item, fixed monthly, usage monthly, price keys) ------------------
def _eks(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    log_types = resource["inputs"].get("enabledClusterLogTypes") or []
    logs = len(log_types) * CONTROL_PLANE_LOG_GB_PER_TYPE * ctx.catalog.rate("logs.ingest.gb")
    version = resource["inputs"].get("version") or ""
    extended = upstream.in_extended_support(version, ctx.on)
    key = "eks.cluster.extended" if extended else "eks.cluster"
    item = f"control plane (Kubernetes {version} in extended support)" if extended else "control plane"
    return [
        (item, ctx.catalog.rate(key) * HOURS_PER_MONTH, 0.0, (key,)),
        (f"control-plane logs ({len(log_types)} types, est.)", 0.0, logs, ("logs.ingest.gb",)),
    ]


def _node_group(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    inputs = resource["inputs"]
    instance = inputs["instanceTypes"][0]
    capacity = "spot" if inputs.get("capacityType") == "SPOT" else "on-demand"
    count = inputs["scalingConfig"]["desiredSize"]
    key = f"ec2.{instance}.{capacity}"
    volume_gib = _sibling_volume_gib(resource, ctx) or inputs.get("diskSize") or 20
    return [
        (f"{count} x {instance} {capacity}", count * ctx.catalog.rate(key) * HOURS_PER_MONTH, 0.0, (key,)),
        (f"{count} x {volume_gib} GiB gp3 root", count * volume_gib * ctx.catalog.rate("ebs.gp3.gb-month"), 0.0,
         ("ebs.gp3.gb-month",)),
    ]


def _sibling_volume_gib(resource: dict[str, Any], ctx: Context) -> int | None:
    for template in ctx.resources("aws:ec2/launchTemplate:LaunchTemplate"):
        if ctx.component(template) == ctx.component(resource):
            for mapping in template["inputs"].get("blockDeviceMappings") or []:
                return int(mapping["ebs"]["volumeSize"])
    return None


def _nat(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    gateways = len(ctx.resources(resource["type"]))
    # A new GPU node pulls the vLLM image from Docker Hub through NAT, unless its data volume has it (a snapshot)
    # or the in-region pull-through cache serves it (over the VPC's ECR endpoints); with modelSource huggingface
    # the weights come through NAT too.
    image_gb = 0.0 if _gpu_snapshot_id(ctx) or ctx.resources(PULL_THROUGH_RULE) else ctx.image_gb
    per_launch = image_gb + (ctx.model_gb if ctx.huggingface else 0)
    gb = ctx.usage.gpu_node_launches * per_launch / gateways
    what = " + ".join(name for name, size in (("image", image_gb), ("weights", per_launch - image_gb)) if size)
    return [
        ("gateway hours", ctx.catalog.rate("natgateway.hour") * HOURS_PER_MONTH, 0.0, ("natgateway.hour",)),
        (f"{gb:,.0f} GB processed ({what or 'nothing'} per new GPU node)", 0.0,
         gb * ctx.catalog.rate("natgateway.gb"), ("natgateway.gb",)),
    ]


def _gpu_snapshot_id(ctx: Context) -> str | None:
    """The snapshot the GPU node class's data volume starts from (prefetched images), if any."""
    return next((str(ebs["snapshotID"]) for ebs in _pool_volumes("gpu", ctx) if ebs.get("snapshotID")), None)


def _image_snapshot(ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    """The prefetched-image snapshot: stored all month, and read into each new GPU node's volume at the
    provisioned initialization rate (charged per GB)."""
    if not _gpu_snapshot_id(ctx):
        return []
    snapshot_gb = ctx.image_gb * (1 + UNPACKED_PER_COMPRESSED_GB)
    initialized_gb = ctx.usage.gpu_node_launches * snapshot_gb
    return [
        (f"image snapshot, about {snapshot_gb:,.0f} GB stored (estimate)",
         snapshot_gb * ctx.catalog.rate("ebs.snapshot.gb-month"), 0.0, ("ebs.snapshot.gb-month",)),
        (f"{initialized_gb:,.0f} GB of it initialized into new GPU nodes' volumes", 0.0,
         initialized_gb * ctx.catalog.rate("ebs.volume-initialization.gb"), ("ebs.volume-initialization.gb",)),
    ]


def _eip(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    return [("public IPv4", ctx.catalog.rate("ipv4.public.hour") * HOURS_PER_MONTH, 0.0, ("ipv4.public.hour",))]


def _endpoint(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    inputs = resource["inputs"]
    if inputs.get("vpcEndpointType") != "Interface":
        return [("gateway endpoint (free)", 0.0, 0.0, ())]
    zones = len(inputs.get("subnetIds") or [])
    hourly = ctx.catalog.rate("vpce.interface.az-hour")
    return [(f"interface endpoint in {zones} AZs", zones * hourly * HOURS_PER_MONTH, 0.0, ("vpce.interface.az-hour",))]


def _log_group(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    subnets = [r for r in ctx.resources("aws:ec2/subnet:Subnet") if "private" in r["name"]]
    gb = len(subnets) * FLOW_LOG_GB_PER_SUBNET + ctx.usage.requests * FLOW_LOG_BYTES_PER_REQUEST / 1e9
    retention_months = min((resource["inputs"].get("retentionInDays") or 30) / 30, 1.0)
    cost = gb * ctx.catalog.rate("logs.ingest.gb") + gb * retention_months * ctx.catalog.rate("logs.storage.gb-month")
    return [(f"{gb:,.1f} GB/month of flow logs (est.)", 0.0, cost, ("logs.ingest.gb", "logs.storage.gb-month"))]


def _cache(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    inputs = resource["inputs"]
    nodes = int(inputs.get("numCacheClusters") or 1)
    key = f"elasticache.{inputs['nodeType']}"
    return [(f"{nodes} x {inputs['nodeType']}", nodes * ctx.catalog.rate(key) * HOURS_PER_MONTH, 0.0, (key,))]


def _kms(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    return [("customer managed key", ctx.catalog.rate("kms.key-month"), 0.0, ("kms.key-month",))]


def _secret(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    key = "secretsmanager.secret-month"
    return [("secret", ctx.catalog.rate(key), 0.0, (key,))]


def _bucket(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    gb = ctx.model_gb * MODEL_VERSIONS_KEPT
    return [(f"{gb:,.0f} GB of weights ({MODEL_VERSIONS_KEPT} versions)", gb * ctx.catalog.rate("s3.standard.gb-month"),
             0.0, ("s3.standard.gb-month",))]


def _repository(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    """The tagged images its lifecycle policy keeps, at IMAGE_GB each."""
    gb = KEEP_IMAGES * IMAGE_GB
    key = "ecr.storage.gb-month"
    return [(f"{gb:,.0f} GB of images ({KEEP_IMAGES} kept)", gb * ctx.catalog.rate(key), 0.0, (key,))]


def _waf(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    rules = len(resource["inputs"].get("rules") or [])
    fixed = ctx.catalog.rate("waf.webacl-month") + rules * ctx.catalog.rate("waf.rule-month")
    usage = ctx.usage.requests / 1e6 * ctx.catalog.rate("waf.requests.million")
    return [(f"web ACL, {rules} rules, requests", fixed, usage,
             ("waf.webacl-month", "waf.rule-month", "waf.requests.million"))]


def _ingress(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    if (resource["inputs"].get("spec") or {}).get("ingressClassName") != "alb":
        return [("not an ALB ingress", 0.0, 0.0, ())]
    usage = ctx.usage
    request_bytes = usage.prompt_tokens * BYTES_PER_TOKEN + HTTP_OVERHEAD_BYTES
    response_bytes = usage.output_tokens * BYTES_PER_TOKEN + HTTP_OVERHEAD_BYTES
    # LCU: the largest of new connections/25 per s and GB processed per hour (one connection per request).
    lcu_hours = sum(
        max(requests / HOUR_S / 25, requests * (request_bytes + response_bytes) / 1e9)
        for requests in usage.hourly_requests
    )
    out_gb = usage.requests * response_bytes / 1e9
    return [
        ("ALB hours", ctx.catalog.rate("alb.hour") * HOURS_PER_MONTH, 0.0, ("alb.hour",)),
        (f"{lcu_hours:,.0f} LCU-hours", 0.0, lcu_hours * ctx.catalog.rate("alb.lcu-hour"), ("alb.lcu-hour",)),
        (f"{out_gb:,.1f} GB out to the internet", 0.0, out_gb * ctx.catalog.rate("transfer.out.gb"),
         ("transfer.out.gb",)),
    ]


def _node_pool(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    pool = pool_label(resource)
    spec, capacity = pool_instance(resource, ctx)
    key = f"ec2.{spec.name}.{capacity}"
    volume_month = _node_volume_monthly(resource, ctx)
    if pool == "gpu":
        hours = ctx.usage.gpu_node_hours
        node_month = ctx.catalog.rate(key) * HOURS_PER_MONTH + volume_month
        return [(f"GPU nodes: {hours:,.0f} h of {spec.name} {capacity}", 0.0, hours / HOURS_PER_MONTH * node_month,
                 (key, "ebs.gp3.gb-month")), *_image_snapshot(ctx)]
    nodes = _cpu_nodes(pool, spec, ctx)
    return [(f"{nodes} x {spec.name} {capacity} (minimum replicas)", nodes * (
        ctx.catalog.rate(key) * HOURS_PER_MONTH + volume_month), 0.0, (key, "ebs.gp3.gb-month"))]


def pool_label(resource: dict[str, Any]) -> str:
    labels = ((resource["inputs"]["spec"]["template"].get("metadata") or {}).get("labels")) or {}
    return str(next(iter(labels.values()), resource["name"]))


def _requirement(resource: dict[str, Any], key: str) -> list[str]:
    for requirement in resource["inputs"]["spec"]["template"]["spec"].get("requirements") or []:
        if requirement["key"] == key:
            return list(requirement["values"])
    return []


def _pool_pods(pool: str, ctx: Context) -> list[tuple[int, dict[str, str]]]:
    """(replicas, requests) of each Deployment placed on this pool by its nodeSelector."""
    pods = []
    for deployment in ctx.resources("kubernetes:apps/v1:Deployment"):
        template = deployment["inputs"]["spec"]["template"]["spec"]
        if (template.get("nodeSelector") or {}).get("llm-platform/pool") == pool:
            requests = template["containers"][0].get("resources", {}).get("requests", {})
            pods.append((int(deployment["inputs"]["spec"].get("replicas") or 0), requests))
    return pods


def pool_instance(resource: dict[str, Any], ctx: Context) -> tuple[InstanceSpec, str]:
    families = _requirement(resource, "karpenter.k8s.aws/instance-family")
    families += sorted({t.split(".")[0] for t in _requirement(resource, "node.kubernetes.io/instance-type")})
    capacity_types = _requirement(resource, "karpenter.sh/capacity-type") or ["on-demand"]
    pods = _pool_pods(pool_label(resource), ctx) or [(0, {})]
    cpu = max(quantity_value(str(r.get("cpu", "0"))) for _, r in pods)
    memory = max(quantity_value(str(r.get("memory", "0"))) for _, r in pods) / GIB
    gpus = max(int(r.get("nvidia.com/gpu", 0)) for _, r in pods)
    return ctx.catalog.cheapest_fit(families, capacity_types, cpu, memory, gpus)


def _cpu_nodes(pool: str, spec: InstanceSpec, ctx: Context) -> int:
    pods = _pool_pods(pool, ctx)
    cpu = sum(n * quantity_value(str(r.get("cpu", "0"))) for n, r in pods)
    memory = sum(n * quantity_value(str(r.get("memory", "0"))) for n, r in pods) / GIB
    return max(ceil_div(cpu, spec.usable_cpu), ceil_div(memory, spec.usable_memory_gib))


def _pool_volumes(pool: str, ctx: Context) -> list[dict[str, Any]]:
    """The EBS volumes (`ebs` of each block device mapping) of the pool's EC2NodeClass, one node's worth."""
    for node_class in ctx.resources("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"):
        if pool in node_class["name"]:
            return [mapping["ebs"] for mapping in node_class["inputs"]["spec"].get("blockDeviceMappings") or []]
    return []


def _node_volume_monthly(resource: dict[str, Any], ctx: Context) -> float:
    """gp3 root volume(s) of one node for a month, from the pool's EC2NodeClass (size, IOPS and throughput over
    the free 3000 / 125)."""
    total = 0.0
    for ebs in _pool_volumes(pool_label(resource), ctx):
        total += quantity_value(str(ebs["volumeSize"])) / GIB * ctx.catalog.rate("ebs.gp3.gb-month")
        total += max(0, int(ebs.get("iops") or 3000) - 3000) * ctx.catalog.rate("ebs.gp3.iops-month")
        total += max(0, int(ebs.get("throughput") or 125) - 125) * ctx.catalog.rate("ebs.gp3.mibps-month")
    return total


def _days(field: str) -> set[int]:
    """A cron day-of-week field (`*`, `1-5`, `0,6`; 7 is Sunday like 0) as the days it names."""
    if field == "*":
        return set(range(7))
    days: set[int] = set()
    for part in field.split(","):
        low, _, high = part.partition("-")
        days |= {int(day) % 7 for day in range(int(low), int(high or low) + 1)}
    return days


def weekly_hours(start: str, end: str) -> float:
    """Hours a week between two daily cron times (`M H * * DOW`, KEDA's cron scaler): the window opens at `start`
    on its days and closes at the next `end`, past midnight when `end` is earlier in the day."""
    fields = [cron.split() for cron in (start, end)]
    if any(len(f) != 5 or f[2:4] != ["*", "*"] or not (f[0] + f[1]).isdigit() for f in fields):
        raise UnpricedError(f"cron schedule {start!r} to {end!r}: only daily `M H * * DOW` times are priced")
    (start_min, start_hour, *_), (end_min, end_hour, *_) = fields
    open_h = (int(end_hour) + int(end_min) / 60 - int(start_hour) - int(start_min) / 60) % 24
    return len(_days(fields[0][4])) * open_h


def _warm_capacity(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    """A KEDA cron trigger that holds GPU placeholders (components/warm_capacity.py): its scheduled hours of GPU
    nodes, whatever the traffic, at the GPU pool's node price (the node and its volume)."""
    target = resource["inputs"]["spec"]["scaleTargetRef"]["name"]
    pools = [r for r in ctx.resources("kubernetes:karpenter.sh/v1:NodePool") if pool_label(r) == "gpu"]
    on_gpu = any(
        d["inputs"].get("metadata", {}).get("name") == target
        and (d["inputs"]["spec"]["template"]["spec"].get("nodeSelector") or {}).get("llm-platform/pool") == "gpu"
        for d in ctx.resources("kubernetes:apps/v1:Deployment")
    )
    lines: list[tuple[str, float, float, tuple[str, ...]]] = []
    for trigger in resource["inputs"]["spec"].get("triggers") or []:
        if trigger["type"] != "cron" or not on_gpu or not pools:
            continue
        meta = trigger["metadata"]
        hours = weekly_hours(meta["start"], meta["end"]) * HOURS_PER_MONTH / 168 * int(meta["desiredReplicas"])
        spec, capacity = pool_instance(pools[0], ctx)
        key = f"ec2.{spec.name}.{capacity}"
        node_month = ctx.catalog.rate(key) * HOURS_PER_MONTH + _node_volume_monthly(pools[0], ctx)
        lines.append((f"warm GPU capacity: {hours:,.0f} h of {spec.name} {capacity} ({meta['start']} to "
                      f"{meta['end']})", hours / HOURS_PER_MONTH * node_month, 0.0, (key, "ebs.gp3.gb-month")))
    return lines


def _release(resource: dict[str, Any], ctx: Context) -> list[tuple[str, float, float, tuple[str, ...]]]:
    """A Helm release runs on priced nodes; the persistent volumes its values ask for are priced here (gp3)."""
    gib = sum(count * size for count, size in release_volumes(resource["inputs"].get("values") or {}))
    if not gib:
        return []
    return [(f"{gib:,.0f} GiB of gp3 persistent volumes", gib * ctx.catalog.rate("ebs.gp3.gb-month"), 0.0,
             ("ebs.gp3.gb-month",))]


def _claim_gib(storage: dict[str, Any]) -> float:
    request = (((storage.get("volumeClaimTemplate") or {}).get("spec") or {}).get("resources") or {}).get("requests")
    return quantity_value(str((request or {}).get("storage") or "0")) / GIB


def release_volumes(values: dict[str, Any]) -> list[tuple[int, float]]:
    """(instances, GiB each) of the volumes kube-prometheus-stack's values ask for: Prometheus and Alertmanager
    (one claim per instance, from their StorageSpec) and Grafana (persistence.size)."""
    prometheus = (values.get("prometheus") or {}).get("prometheusSpec") or {}
    alertmanager = (values.get("alertmanager") or {}).get("alertmanagerSpec") or {}
    grafana = (values.get("grafana") or {}).get("persistence") or {}
    found = [
        (int(prometheus.get("replicas") or 1), _claim_gib(prometheus.get("storageSpec") or {})),
        (int(alertmanager.get("replicas") or 1), _claim_gib(alertmanager.get("storage") or {})),
        (1, quantity_value(str(grafana.get("size") or "0")) / GIB if grafana.get("enabled") else 0.0),
    ]
    return [(count, size) for count, size in found if size]


RULES: dict[str, Rule] = {
    "eks:index:Cluster": _eks,
    "aws:eks/nodeGroup:NodeGroup": _node_group,
    "aws:ec2/natGateway:NatGateway": _nat,
    "aws:ec2/eip:Eip": _eip,
    "aws:ec2/vpcEndpoint:VpcEndpoint": _endpoint,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:elasticache/replicationGroup:ReplicationGroup": _cache,
    "aws:kms/key:Key": _kms,
    "aws:secretsmanager/secret:Secret": _secret,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:ecr/repository:Repository": _repository,
    "aws:wafv2/webAcl:WebAcl": _waf,
    "kubernetes:networking.k8s.io/v1:Ingress": _ingress,
    "kubernetes:helm.sh/v3:Release": _release,
    "kubernetes:karpenter.sh/v1:NodePool": _node_pool,
    "kubernetes:keda.sh/v1alpha1:ScaledObject": _warm_capacity,
}


def free_reason(type_token: str) -> str | None:
    if type_token in FREE:
        return FREE[type_token]
    return next((reason for prefix, reason in FREE_PREFIXES.items() if type_token.startswith(prefix)), None)


def price_graph(ctx: Context) -> tuple[list[Line], list[str]]:
    """Lines for every billable resource, and the types neither priced nor known to be free."""
    lines, unpriced = [], set()
    for resource in ctx.graph["resources"]:
        rule = RULES.get(resource["type"])
        if rule is None:
            if free_reason(resource["type"]) is None:
                unpriced.add(resource["type"])
            continue
        try:
            parts = rule(resource, ctx)
        except UnpricedError as error:
            unpriced.add(f"{resource['type']} ({error})")
            continue
        component = ctx.component(resource)
        for item, fixed, usage, keys in parts:
            lines.append(Line(component, resource["name"], resource["type"], item, fixed, usage, keys))
    return lines, sorted(unpriced)
