"""Typed configuration of the workloads: vLLM, the gateway and extra app services."""

import re
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from stacks.config_base import StrictModel

# Quantization methods vLLM 0.33 accepts for `--quantization` that fit a single L4/A10G-class GPU.
Quantization = Literal["awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "compressed-tensors", "bitsandbytes"]
QUANTITY_PATTERN = r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$"
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN)]
DNS_LABEL = r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"


def _pinned_image(value: str) -> str:
    name, _, tag = value.rpartition(":")
    if "@sha256:" in value or (name and "/" not in tag and tag and tag != "latest"):
        return value
    raise ValueError("image must be pinned to a tag other than 'latest' or a digest, like repo/app:1.2.3")


def _generation_config(value: str) -> str:
    if value in ("auto", "vllm") or value.startswith("/"):
        return value
    raise ValueError("generationConfig must be 'auto' (the model's file), 'vllm' (vLLM defaults) or an absolute path")


PinnedImage = Annotated[str, AfterValidator(_pinned_image)]


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


class VllmConfig(StrictModel):
    model_source: Literal["huggingface", "s3"] = "huggingface"
    model: str = Field(
        default="Qwen/Qwen2.5-7B-Instruct",
        min_length=1,
        description="Hugging Face id, or with modelSource s3 the prefix under the model bucket (safetensors).",
    )
    served_model_name: str | None = Field(default=None, description="Name clients send; default: model.")
    max_model_len: int = Field(default=4096, ge=256, le=1_048_576)
    max_num_seqs: int = Field(default=8, ge=1, le=1024)
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=0.95)
    enable_prefix_caching: bool = True
    quantization: Quantization | None = None
    generation_config: Annotated[str, AfterValidator(_generation_config)] = "vllm"
    shutdown_timeout_s: int = Field(default=60, ge=0, le=3600, description="vLLM drains in-flight requests this long.")
    pre_stop_sleep_s: int = Field(default=10, ge=0, le=120, description="Lets endpoints drop the pod first.")
    startup_timeout_s: int = Field(default=900, ge=60, le=3600, description="Image pull excluded: model load window.")
    min_replicas: int = Field(default=1, ge=0, le=100)
    max_replicas: int = Field(default=2, ge=1, le=100)
    gpus_per_pod: int = Field(default=1, ge=1, le=8)
    resources: Resources = Field(
        default_factory=lambda: Resources(cpu_request="4", memory_request="24Gi", cpu_limit="8", memory_limit="28Gi")
    )
    runai_streamer_concurrency: int = Field(default=16, ge=1, le=256)
    shm_size: Quantity = "8Gi"

    @property
    def name_for_clients(self) -> str:
        return self.served_model_name or self.model

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        if self.model_source == "s3" and (self.model.startswith("s3://") or self.model.startswith("/")):
            raise ValueError("with modelSource s3, model is a prefix inside the model bucket, like models/qwen2.5-7b/")
        return self


class ScaleRate(StrictModel):
    """One HPA scaling direction: at most `pods` per `period_s`, after `stabilization_window_s`."""

    stabilization_window_s: int = Field(ge=0, le=3600)
    pods: int = Field(ge=1, le=100)
    period_s: int = Field(ge=1, le=1800)


class ScalingConfig(StrictModel):
    activation: Literal["gateway", "none"] = Field(
        default="gateway",
        description="gateway: the gateway's held-request gauge wakes vLLM from zero; none: vLLM metrics only.",
    )
    target_per_pod: int = Field(default=6, ge=1, description="Scaling formula value one pod should carry.")
    waiting_weight: int = Field(default=10, ge=1, description="A queued request counts this many running ones.")
    polling_interval_s: int = Field(default=15, ge=5, le=300)
    cooldown_period_s: int = Field(default=300, ge=30, le=3600, description="Idle time before scaling to zero.")
    fallback_replicas: int | None = Field(default=None, ge=1, description="Replicas while Prometheus is unreachable.")
    scale_up: ScaleRate = Field(default_factory=lambda: ScaleRate(stabilization_window_s=30, pods=2, period_s=60))
    scale_down: ScaleRate = Field(
        default_factory=lambda: ScaleRate(stabilization_window_s=300, pods=1, period_s=120)
    )


class ApiKey(StrictModel):
    id: str = Field(pattern=DNS_LABEL)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="`python -m serving.gateway hash-key` prints it.")
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)


class GatewayConfig(StrictModel):
    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(default=2, ge=1, le=100)
    cpu_target_percent: int = Field(default=70, ge=10, le=100)
    workers: int = Field(default=2, ge=1, le=32)
    resources: Resources = Field(
        default_factory=lambda: SMALL_CPU_SERVICE
    )
    hold_timeout_s: int = Field(default=300, ge=0, le=1800, description="Hold requests this long while vLLM starts.")
    idle_timeout_s: int = Field(default=600, ge=60, le=4000, description="ALB idle timeout; streams stay open.")
    drain_timeout_s: int = Field(default=60, ge=0, le=600)
    pre_stop_sleep_s: int = Field(default=5, ge=0, le=60)
    upstream_connect_timeout_s: int = Field(default=5, ge=1, le=60)
    upstream_read_timeout_s: int = Field(default=300, ge=10, le=3600)
    rate_limit_rpm: int = Field(default=600, ge=1)
    rate_limit_tpm: int = Field(default=200_000, ge=1)
    cache_ttl_s: int = Field(default=3600, ge=0)
    max_tokens: int = Field(default=1024, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    api_keys: list[ApiKey] = Field(default_factory=list, description="Hashes only; the gateway never sees plaintext.")

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        if self.idle_timeout_s <= self.hold_timeout_s:
            raise ValueError(
                f"idleTimeoutS {self.idle_timeout_s} must exceed holdTimeoutS {self.hold_timeout_s}: the ALB would "
                "close a held request before vLLM is up"
            )
        ids = [key.id for key in self.api_keys]
        if len(ids) != len(set(ids)):
            raise ValueError("apiKeys ids must be unique")
        return self


class AppConfig(StrictModel):
    """A CPU service that calls the gateway (its URL arrives in env GATEWAY_URL)."""

    name: str = Field(pattern=DNS_LABEL)
    image: PinnedImage
    port: int = Field(ge=1, le=65535)
    health_path: str = Field(default="/health", pattern=r"^/")
    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(default=3, ge=1, le=100)
    cpu_target_percent: int = Field(default=70, ge=10, le=100)
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(
        default_factory=lambda: SMALL_CPU_SERVICE
    )

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"app {self.name}: minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}"
            )
        reserved = [
            key for key in self.env if key == "GATEWAY_URL" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key)
        ]
        if reserved:
            raise ValueError(f"app {self.name}: env keys {reserved} are reserved or not valid variable names")
        return self


class ServingConfig(StrictModel):
    vllm: VllmConfig = Field(default_factory=VllmConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
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
        return self


# Seed 000's sizing: a 7B model on one 24 GB GPU with short contexts and a handful of concurrent sequences.
SERVING_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        "vllm": {"minReplicas": 0, "maxReplicas": 2},
        "scaling": {"activation": "gateway", "cooldownPeriodS": 300},
        "gateway": {"minReplicas": 1, "maxReplicas": 2, "workers": 1},
        # Seed 000's Flask API: CPU pods in front of the gateway, scaled at 70% CPU.
        "apps": [
            {
                "name": "flask-api",
                "image": "ghcr.io/llm-platform/flask-api:0.1.0",
                "port": 5006,
                "healthPath": "/health",
                "minReplicas": 1,
                "maxReplicas": 3,
                "cpuTargetPercent": 70,
            }
        ],
    },
    "prod": {
        "vllm": {"minReplicas": 1, "maxReplicas": 6},
        "scaling": {"activation": "gateway", "fallbackReplicas": 2, "cooldownPeriodS": 600},
        "gateway": {
            "minReplicas": 2,
            "maxReplicas": 6,
            "workers": 2,
            "resources": {"cpuRequest": "500m", "memoryRequest": "512Mi", "cpuLimit": "2", "memoryLimit": "1Gi"},
        },
        "apps": [],
    },
}
