"""Typed configuration of the cluster add-ons: Karpenter and its node pools, NVIDIA, KEDA, Prometheus."""

import re
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from components.versions import GPU_AMI_ALIAS_DEV, GPU_AMI_ALIAS_PROD
from stacks.config_base import StrictModel

CapacityType = Literal["spot", "on-demand"]
ConsolidationPolicy = Literal["WhenEmpty", "WhenEmptyOrUnderutilized"]
# EC2 families with NVIDIA GPUs that the EKS AL2023/Bottlerocket NVIDIA AMIs support.
GPU_INSTANCE_FAMILIES = (
    "g4dn", "g5", "g6", "g6e", "g6f", "gr6", "gr6f", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200",
)
AMI_ALIAS_PATTERN = r"^(al2023|bottlerocket)@(latest|v\d[\w.-]*)$"
DURATION_PATTERN = r"^([0-9]+(s|m|h))+$"
# A GPU node that is consolidated sooner can be killed while it still pulls an 8-10 GB image
# (karpenter-provider-aws#7414).
MIN_GPU_CONSOLIDATE_AFTER_S = 15 * 60


def duration_seconds(duration: str) -> int:
    """Seconds in a Karpenter/Go duration like `1h30m`."""
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(amount) * units[unit] for amount, unit in re.findall(r"([0-9]+)([smh])", duration))


class PoolConfig(StrictModel):
    """What every Karpenter pool has: where its capacity comes from and how much of it there may be."""

    instance_families: list[str] = Field(default_factory=list)
    instance_types: list[str] = Field(
        default_factory=list, description="Exact types; when set they replace instanceFamilies."
    )
    capacity_types: list[CapacityType] = Field(default=["spot"], min_length=1)
    cpu_limit: int = Field(default=64, ge=1, description="vCPUs the pool may hold in total.")
    memory_limit_gib: int = Field(default=256, ge=1)
    consolidation_policy: ConsolidationPolicy = "WhenEmptyOrUnderutilized"
    consolidate_after: str = Field(default="1m", pattern=DURATION_PATTERN)
    expire_after: str = Field(default="720h", pattern=DURATION_PATTERN)
    root_volume_gib: int = Field(default=50, ge=20, le=16384)
    root_volume_iops: int = Field(default=3000, ge=3000, le=16000)
    root_volume_throughput_mibps: int = Field(default=125, ge=125, le=1000)

    @model_validator(mode="after")
    def capacity_chosen(self) -> Self:
        if not self.instance_families and not self.instance_types:
            raise ValueError("set instanceFamilies (like g6) or instanceTypes (like g6.xlarge)")
        if len(set(self.capacity_types)) != len(self.capacity_types):
            raise ValueError(f"capacityTypes {self.capacity_types} lists a type twice; allowed: spot, on-demand")
        for instance_type in self.instance_types:
            if not re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z0-9]+", instance_type):
                raise ValueError(f"instanceTypes entry {instance_type!r} is not an EC2 instance type like g6.xlarge")
        return self

    @property
    def families(self) -> list[str]:
        """Families the pool draws from: those of the configured types, else the configured families."""
        return sorted({t.split(".")[0] for t in self.instance_types}) if self.instance_types else self.instance_families


class GpuPoolConfig(PoolConfig):
    instance_families: list[str] = Field(default_factory=lambda: ["g6", "g5"])
    gpu_limit: int = Field(default=4, ge=1, description="nvidia.com/gpu the pool may hold in total.")
    consolidation_policy: ConsolidationPolicy = "WhenEmpty"
    consolidate_after: str = Field(default="15m", pattern=DURATION_PATTERN)
    root_volume_gib: int = Field(default=200, ge=100, le=16384)
    root_volume_iops: int = Field(default=6000, ge=3000, le=16000)
    root_volume_throughput_mibps: int = Field(default=750, ge=125, le=1000)
    ami_alias: str = Field(default=GPU_AMI_ALIAS_DEV, pattern=AMI_ALIAS_PATTERN)
    require_pinned_ami: bool = False

    @model_validator(mode="after")
    def gpu_capacity(self) -> Self:
        for family in self.families:
            if family not in GPU_INSTANCE_FAMILIES:
                raise ValueError(
                    f"instance family {family!r} has no NVIDIA GPU; allowed: {', '.join(GPU_INSTANCE_FAMILIES)}"
                )
        if self.require_pinned_ami and self.ami_alias.endswith("@latest"):
            raise ValueError(
                f"amiAlias {self.ami_alias} follows the latest release but requirePinnedAmi is set (prod must pin "
                f"an AMI version), e.g. {GPU_AMI_ALIAS_PROD}"
            )
        if duration_seconds(self.consolidate_after) < MIN_GPU_CONSOLIDATE_AFTER_S:
            raise ValueError(
                f"consolidateAfter {self.consolidate_after} is under 15m: Karpenter could remove a GPU node while "
                "it still pulls the vLLM image"
            )
        return self

    @property
    def ami_family(self) -> str:
        return self.ami_alias.split("@")[0]

    @property
    def needs_device_plugin(self) -> bool:
        """Bottlerocket's NVIDIA variant ships its own device plugin; AL2023's NVIDIA AMI does not."""
        return self.ami_family == "al2023"


class CpuPoolConfig(PoolConfig):
    instance_families: list[str] = Field(default_factory=lambda: ["m7i", "m6i", "c7i", "c6i"])


class KarpenterConfig(StrictModel):
    controller_replicas: int = Field(default=1, ge=1, le=3)
    gpu_pool: GpuPoolConfig = Field(default_factory=GpuPoolConfig)
    cpu_pool: CpuPoolConfig = Field(default_factory=CpuPoolConfig)


class KedaConfig(StrictModel):
    operator_replicas: int = Field(default=1, ge=1, le=3)


class AlertThresholds(StrictModel):
    error_rate: float = Field(default=0.05, gt=0, lt=1, description="Share of gateway requests answered 5xx.")
    queue_depth: int = Field(default=20, ge=1, description="Requests waiting in vLLM, summed over pods.")
    p95_latency_s: float = Field(default=10, gt=0, description="Gateway p95 request duration.")
    for_duration: str = Field(default="5m", pattern=r"^[0-9]+[smh]$", description="How long before firing.")
    cold_start_grace: str = Field(
        default="10m", pattern=r"^[0-9]+[smh]$",
        description="How long requests may wait for a first vLLM pod (node, image pull, model load) before alerting.",
    )


class ObservabilityConfig(StrictModel):
    retention: str = Field(default="7d", pattern=r"^[0-9]+[hdwy]$")
    storage_gib: int | None = Field(
        default=None, ge=5, le=16384,
        description="Persistent volume for Prometheus; needs the EBS CSI driver. Unset: emptyDir, lost on restart.",
    )
    prometheus_replicas: int = Field(default=1, ge=1, le=3)
    alerts: AlertThresholds = Field(default_factory=AlertThresholds)
    gpu_node_hourly_usd: float = Field(
        default=0.5, gt=0, description="Average price of one GPU node-hour, for the projected-cost alert."
    )
    base_monthly_usd: float = Field(
        default=300, ge=0, description="Everything but GPU nodes (control plane, system nodes, NAT, cache)."
    )


class AddonsConfig(StrictModel):
    karpenter: KarpenterConfig = Field(default_factory=KarpenterConfig)
    keda: KedaConfig = Field(default_factory=KedaConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)


ADDONS_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        "karpenter": {
            "controllerReplicas": 1,
            "gpuPool": {
                "instanceFamilies": ["g6", "g5"],
                "capacityTypes": ["spot"],
                "cpuLimit": 32,
                "memoryLimitGib": 128,
                "gpuLimit": 2,
                "amiAlias": GPU_AMI_ALIAS_DEV,
                "requirePinnedAmi": False,
            },
            "cpuPool": {"capacityTypes": ["spot"], "cpuLimit": 16, "memoryLimitGib": 64},
        },
        "keda": {"operatorReplicas": 1},
        "observability": {
            "retention": "3d",
            "prometheusReplicas": 1,
            "gpuNodeHourlyUsd": 0.35,
            "baseMonthlyUsd": 250,
        },
    },
    "prod": {
        "karpenter": {
            "controllerReplicas": 2,
            "gpuPool": {
                "instanceFamilies": ["g6", "g5", "g6e"],
                "capacityTypes": ["spot", "on-demand"],
                "cpuLimit": 256,
                "memoryLimitGib": 1024,
                "gpuLimit": 16,
                "amiAlias": GPU_AMI_ALIAS_PROD,
                "requirePinnedAmi": True,
            },
            "cpuPool": {"capacityTypes": ["spot", "on-demand"], "cpuLimit": 64, "memoryLimitGib": 256},
        },
        "keda": {"operatorReplicas": 2},
        "observability": {
            "retention": "15d",
            "prometheusReplicas": 2,
            "gpuNodeHourlyUsd": 0.9,
            "baseMonthlyUsd": 600,
        },
    },
}
