"""The typed configuration of one stack: everything `Pulumi.<stack>.yaml` may set under `llm-platform:`.

Each component owns the model of its own settings (`components/<concern>.py`); this module assembles them into
the stack's shape and checks what spans components. Keys are camelCase in YAML (Pulumi's convention) and
snake_case in Python. Unknown keys are errors, so a typo never silently falls back to a default.
"""

import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from components.alerting import AlertingConfig
from components.apps import AppConfig
from components.cache import CacheConfig
from components.cluster import ClusterConfig
from components.cold_start import (
    ALB_MAX_IDLE_TIMEOUT_S,
    ASSUMED_SIZE_B,
    ColdStartBudget,
    ColdStartConfig,
    ColdStartInputs,
    ModelSizeUnknown,
    cold_start_budget,
    model_size_b,
    weights_gb,
)
from components.config_base import StrictModel
from components.edge import EdgeConfig
from components.gateway import GatewayConfig
from components.image_cache import ImageCacheConfig
from components.images import BuildConfig
from components.log_shipping import LogsConfig
from components.model_store import ModelStoreConfig
from components.network import NetworkConfig
from components.node_pools import KARPENTER_RESERVED_TAGS, CpuPoolConfig, GpuPoolConfig
from components.observability import ObservabilityConfig
from components.slo import SloConfig
from components.tracing import TracingConfig
from components.vllm import ScalingConfig, VllmConfig
from components.warm_capacity import WarmCapacityConfig
from stacks.traffic import SimulationConfig, TrafficConfig

AWS_REGION_PATTERN = r"^(us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-\d$"
# The repository root (beside Pulumi.yaml): image build contexts are relative to it, whatever the working directory.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
GATEWAY_BUILD = BuildConfig(context=".", dockerfile="serving/Dockerfile")


def _region(value: str) -> str:
    if not re.fullmatch(AWS_REGION_PATTERN, value):
        raise ValueError("not an AWS region like us-west-2")
    return value


Region = Annotated[str, AfterValidator(_region)]


class KarpenterConfig(StrictModel):
    controller_replicas: int = Field(default=1, ge=1, le=3)
    gpu_pool: GpuPoolConfig = Field(default_factory=GpuPoolConfig)
    cpu_pool: CpuPoolConfig = Field(default_factory=CpuPoolConfig)


class KedaConfig(StrictModel):
    operator_replicas: int = Field(default=1, ge=1, le=3)


class AddonsConfig(StrictModel):
    karpenter: KarpenterConfig = Field(default_factory=KarpenterConfig)
    keda: KedaConfig = Field(default_factory=KedaConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    slo: SloConfig = Field(default_factory=SloConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    image_cache: ImageCacheConfig = Field(default_factory=ImageCacheConfig)


class ServingConfig(StrictModel):
    vllm: VllmConfig = Field(default_factory=VllmConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    cold_start: ColdStartConfig = Field(default_factory=ColdStartConfig)
    warm_capacity: WarmCapacityConfig = Field(default_factory=WarmCapacityConfig)
    apps: list[AppConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.vllm.min_replicas == 0 and self.scaling.activation != "gateway":
            raise ValueError(
                "vllm.minReplicas is 0 but scaling.activation is 'none'; vLLM exports no metrics at zero pods, so "
                "set scaling.activation: gateway or vllm.minReplicas >= 1"
            )
        names = [app.name for app in self.apps]
        if len(names) != len(set(names)) or {"vllm", "gateway"} & set(names):
            raise ValueError("apps names must be unique and not 'vllm' or 'gateway'")
        for index, app in enumerate(self.apps):
            if app.build and not (PROJECT_ROOT / app.build.context / app.build.dockerfile).is_file():
                raise ValueError(
                    f"apps.{index}.build: no {app.build.dockerfile} in {app.build.context}/ (a folder of this "
                    "repository, relative to its root)"
                )
        return self


class PlatformConfig(StrictModel):
    """The whole stack. `profile` picks the per-stack defaults (see stacks/defaults.py)."""

    profile: Literal["dev", "prod"]
    region: Region = "us-west-2"
    tags: dict[str, str] = Field(default_factory=dict)
    monthly_budget_usd: float = Field(default=1000, gt=0)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    # No default: every profile sets it, and who may reach the API server is the stack's own choice.
    cluster: ClusterConfig
    cache: CacheConfig = Field(default_factory=CacheConfig)
    model_store: ModelStoreConfig = Field(default_factory=ModelStoreConfig)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    addons: AddonsConfig = Field(default_factory=AddonsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    traffic: TrafficConfig = Field(default_factory=TrafficConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)

    @property
    def production(self) -> bool:
        """Prod protects its state and keeps what a destroy would lose (see stacks/platform.py)."""
        return self.profile == "prod"

    def cold_start_budget(self) -> ColdStartBudget:
        """The cold-start budget of this stack's GPU pods (components/cold_start.py)."""
        vllm = self.serving.vllm
        try:
            size_b, assumed = model_size_b(vllm.model or vllm.name_for_clients, self.simulation.model_size_b), False
        except ModelSizeUnknown:
            # A published prefix need not name its size (models/<name>/<version>/): the budget still stands.
            size_b, assumed = ASSUMED_SIZE_B, True
        gpu_pool = self.addons.karpenter.gpu_pool
        inputs = ColdStartInputs(
            fast_image_pull=gpu_pool.parallel_image_pull,
            weights_from_s3=vllm.model_source == "s3",
            weights_gb=weights_gb(size_b, vllm.quantization),
            weights_assumed=assumed,
            shared_compile_cache=vllm.shared_compile_cache,
            prefetched_image=gpu_pool.image_snapshot_id is not None,
            volume_initialization_mibps=gpu_pool.volume_initialization_rate_mibps,
        )
        return cold_start_budget(inputs, self.serving.cold_start)

    def gateway_timeouts(self) -> tuple[int, int]:
        """The gateway's hold and the ALB's idle timeout: as set, else derived from the cold-start budget."""
        gateway, budget = self.serving.gateway, self.cold_start_budget()
        hold = gateway.hold_timeout_s if gateway.hold_timeout_s is not None else budget.hold_timeout_s
        idle = gateway.idle_timeout_s or budget.idle_timeout_s(hold, gateway.upstream_read_timeout_s)
        return hold, idle

    def resolved_gateway(self) -> GatewayConfig:
        """serving.gateway with its hold and idle timeouts filled in (gateway_timeouts)."""
        hold, idle = self.gateway_timeouts()
        return self.serving.gateway.model_copy(update={"hold_timeout_s": hold, "idle_timeout_s": idle})

    @model_validator(mode="after")
    def cold_start_consistent(self) -> Self:
        hold, idle = self.gateway_timeouts()
        if idle <= hold:
            raise ValueError(
                f"serving.gateway.idleTimeoutS {idle} must exceed holdTimeoutS {hold}: the ALB would close a held "
                "request before vLLM is up"
            )
        if idle > ALB_MAX_IDLE_TIMEOUT_S:
            raise ValueError(
                f"serving.gateway: the ALB idle timeout would be {idle} s (hold {hold} s + upstreamReadTimeoutS), "
                f"over the ALB's {ALB_MAX_IDLE_TIMEOUT_S} s: set idleTimeoutS or lower holdTimeoutS"
            )
        return self

    @model_validator(mode="after")
    def certificate_in_stack_region(self) -> Self:
        arn = self.edge.certificate_arn
        if arn and arn.split(":")[3] != self.region:
            raise ValueError(
                f"edge.certificateArn is in {arn.split(':')[3]} but the stack deploys to {self.region}; an ALB only "
                "uses ACM certificates of its own region"
            )
        return self

    @model_validator(mode="after")
    def prod_alerts_reach_someone(self) -> Self:
        alerting = self.addons.alerting
        for severity, receiver in (("critical", alerting.critical), ("warning", alerting.warning)):
            if self.profile == "prod" and receiver.kind == "none":
                raise ValueError(
                    f"addons.alerting.{severity}.kind is none in a prod stack: route it to slack, pagerduty or "
                    "webhook (credentials in the Secrets Manager secret addons.alerting.secretId)"
                )
        return self

    @model_validator(mode="after")
    def tags_valid(self) -> Self:
        for key, value in self.tags.items():
            if key.startswith("aws:") or not 0 < len(key) <= 128 or len(value) > 256:
                raise ValueError(f"tag {key!r}: keys are 1-128 characters not starting with 'aws:', values <= 256")
            if key.startswith(KARPENTER_RESERVED_TAGS):
                reserved = ", ".join(KARPENTER_RESERVED_TAGS)
                raise ValueError(f"tag {key!r}: Karpenter sets it on its nodes; keys may not start with {reserved}")
        return self
