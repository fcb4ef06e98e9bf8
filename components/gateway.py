"""The OpenAI-compatible gateway in front of vLLM: Secrets (Redis auth, API key hashes), Deployment, Service,
HPA and the internet-facing ALB Ingress."""

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Self, cast

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components import contracts
from components.config_base import StrictModel
from components.kube import (
    DNS_LABEL,
    SMALL_CPU_SERVICE,
    PinnedImage,
    Resources,
    as_manifest,
    autoscaled,
    cpu_hpa,
    cpu_pod_spec,
    http_probes,
    one_at_a_time_budget,
    quantity_value,
    restricted_container_security,
)
from serving.gateway import defaults

GATEWAY_NAME = "gateway"
KEYS_DIR = "/etc/gateway"
KEYS_FILE = "keys.json"
HEALTH_PATH = "/health"
READY_PATH = "/ready"
# What the ALB routes to the gateway: the OpenAI API (serving/gateway/app.py serves /v1/chat/completions,
# /v1/completions and /v1/models to clients). /metrics (per-key counters), /health and /ready stay in-cluster;
# the ALB's health check calls the pod directly, not through these rules.
PUBLIC_PATH_PREFIXES = ("/v1",)
GRACE_MARGIN_S = 10


class ApiKey(StrictModel):
    id: str = Field(pattern=DNS_LABEL)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="`python -m serving.gateway hash-key` prints it.")
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)


class GatewayConfig(StrictModel):
    image: PinnedImage | None = Field(
        default=None,
        description="An existing image to run. Unset: the stack builds serving/Dockerfile and pushes it to its ECR.",
    )
    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(default=2, ge=1, le=100)
    cpu_target_percent: int = Field(default=70, ge=10, le=100)
    workers: int = Field(default=defaults.WORKERS, ge=1, le=32)
    resources: Resources = Field(default_factory=lambda: SMALL_CPU_SERVICE)
    # Unset: derived from the cold-start budget (components/cold_start.py; the stack fills them in).
    hold_timeout_s: int | None = Field(default=None, ge=0, le=1800, description="Hold requests while vLLM starts.")
    idle_timeout_s: int | None = Field(default=None, ge=60, le=4000, description="ALB idle timeout; streams stay open.")
    drain_timeout_s: int = Field(default=defaults.DRAIN_TIMEOUT_S, ge=0, le=600)
    pre_stop_sleep_s: int = Field(default=5, ge=0, le=60)
    upstream_connect_timeout_s: int = Field(default=defaults.UPSTREAM_CONNECT_TIMEOUT_S, ge=1, le=60)
    upstream_read_timeout_s: int = Field(default=defaults.UPSTREAM_READ_TIMEOUT_S, ge=10, le=3600)
    rate_limit_rpm: int = Field(default=defaults.RATE_LIMIT_RPM, ge=1)
    rate_limit_tpm: int = Field(default=defaults.RATE_LIMIT_TPM, ge=1)
    cache_ttl_s: int = Field(default=defaults.CACHE_TTL_S, ge=0)
    local_cache_mb: int = Field(
        default=defaults.LOCAL_CACHE_MB,
        ge=0,
        le=4096,
        description="Per worker: copies of cache entries answered without Redis.",
    )
    rate_limit_lease_percent: float = Field(
        default=defaults.RATE_LIMIT_LEASE_PERCENT,
        ge=0,
        le=10,
        description="Share of a key's per-minute limit a worker takes from Redis at once; 0 counts every request.",
    )
    max_tokens: int = Field(default=defaults.MAX_TOKENS, ge=1)
    max_body_bytes: int = Field(default=defaults.MAX_BODY_BYTES, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default=cast(Any, defaults.LOG_LEVEL.upper()))
    api_keys: list[ApiKey] = Field(default_factory=list, description="Hashes only; the gateway never sees plaintext.")

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        if self.idle_timeout_s is not None and self.hold_timeout_s is not None and (
            self.idle_timeout_s <= self.hold_timeout_s
        ):
            raise ValueError(
                f"idleTimeoutS {self.idle_timeout_s} must exceed holdTimeoutS {self.hold_timeout_s}: the ALB would "
                "close a held request before vLLM is up"
            )
        cache_mib = self.workers * self.local_cache_mb
        if cache_mib > quantity_value(self.resources.memory_limit) / 2**20 / 2:
            raise ValueError(
                f"workers x localCacheMb = {cache_mib} MiB is over half of resources.memoryLimit "
                f"{self.resources.memory_limit}: lower localCacheMb or raise the limit"
            )
        ids = [key.id for key in self.api_keys]
        if len(ids) != len(set(ids)):
            raise ValueError("apiKeys ids must be unique")
        return self


def keys_file(config: GatewayConfig) -> str:
    """The gateway's `--api-keys-file`: ids, hashes and per-key limits, never a plaintext key."""
    return json.dumps({"keys": [key.model_dump(exclude_none=True) for key in config.api_keys]}, indent=2)


def gateway_grace_period_s(config: GatewayConfig) -> int:
    return config.pre_stop_sleep_s + config.drain_timeout_s + GRACE_MARGIN_S


@dataclass(frozen=True)
class GatewayArgs:
    config: GatewayConfig
    # The configured image, or the digest the stack just built and pushed.
    image: pulumi.Input[str]
    namespace: pulumi.Input[str]
    namespace_name: str
    upstream_url: str
    models: str
    redis_endpoint: pulumi.Input[str]
    redis_port: pulumi.Input[int]
    redis_auth_token: pulumi.Input[str]
    kubernetes_provider: k8s.Provider
    load_balancer_name: pulumi.Input[str]
    # The CPU NodePool the pods schedule on.
    capacity: list[pulumi.Resource]
    # The AWS Load Balancer Controller release: its webhooks must admit the Ingress, its finalizer remove the ALB.
    load_balancer_controller: pulumi.Resource
    domain: str | None = None
    certificate_arn: pulumi.Input[str] | None = None
    web_acl_arn: pulumi.Input[str] | None = None
    # More environment, e.g. the OpenTelemetry exporter settings of components/tracing.py.
    extra_env: dict[str, str] = field(default_factory=dict)


class Gateway(pulumi.ComponentResource):
    url: pulumi.Output[str]
    load_balancer_hostname: pulumi.Output[str]
    in_cluster_url: str
    ingress: k8s.networking.v1.Ingress

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Gateway", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider)
        config = args.config
        labels = {contracts.APP_NAME_LABEL: contracts.GATEWAY_APP}

        def meta(object_name: str) -> Any:
            return {"name": object_name, "namespace": args.namespace, "labels": labels}

        redis_secret = k8s.core.v1.Secret(
            f"{name}-redis",
            metadata=meta(f"{GATEWAY_NAME}-redis"),
            string_data=as_manifest({"password": args.redis_auth_token}),
            opts=on_cluster,
        )
        keys = keys_file(config)
        keys_secret = k8s.core.v1.Secret(
            f"{name}-api-keys",
            metadata=meta(f"{GATEWAY_NAME}-api-keys"),
            string_data=as_manifest({KEYS_FILE: keys}),
            opts=on_cluster,
        )
        redis_url = pulumi.Output.concat("rediss://", args.redis_endpoint, ":", pulumi.Output.from_input(
            args.redis_port).apply(str), "/0")
        settings: dict[str, pulumi.Input[str]] = {
            "GATEWAY_HOST": "0.0.0.0",
            "GATEWAY_PORT": str(contracts.GATEWAY_PORT),
            "GATEWAY_UPSTREAM": args.upstream_url,
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_API_KEYS_FILE": f"{KEYS_DIR}/{KEYS_FILE}",
            "GATEWAY_WORKERS": str(config.workers),
            "GATEWAY_MODELS": args.models,
            "GATEWAY_MAX_TOKENS": str(config.max_tokens),
            "GATEWAY_MAX_BODY_BYTES": str(config.max_body_bytes),
            "GATEWAY_RATE_LIMIT_RPM": str(config.rate_limit_rpm),
            "GATEWAY_RATE_LIMIT_TPM": str(config.rate_limit_tpm),
            "GATEWAY_CACHE_TTL_S": str(config.cache_ttl_s),
            "GATEWAY_LOCAL_CACHE_MB": str(config.local_cache_mb),
            "GATEWAY_RATE_LIMIT_LEASE_PERCENT": str(config.rate_limit_lease_percent),
            "GATEWAY_HOLD_TIMEOUT_S": str(config.hold_timeout_s),
            "GATEWAY_UPSTREAM_CONNECT_TIMEOUT_S": str(config.upstream_connect_timeout_s),
            "GATEWAY_UPSTREAM_READ_TIMEOUT_S": str(config.upstream_read_timeout_s),
            "GATEWAY_DRAIN_TIMEOUT_S": str(config.drain_timeout_s),
            "GATEWAY_LOG_LEVEL": config.log_level,
            "OTEL_SERVICE_NAME": GATEWAY_NAME,
            **args.extra_env,
        }
        env: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in settings.items()]
        env.append({
            "name": "GATEWAY_REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": redis_secret.metadata.name, "key": "password"}},
        })
        container = {
            "name": GATEWAY_NAME,
            "image": args.image,
            "ports": [{"name": contracts.METRICS_PORT_NAME, "containerPort": contracts.GATEWAY_PORT}],
            "env": env,
            "resources": config.resources.as_kubernetes(),
            **http_probes(contracts.METRICS_PORT_NAME, HEALTH_PATH, READY_PATH),
            "securityContext": restricted_container_security(),
            # The ALB deregisters the pod during the sleep; SIGTERM then drains in-flight streams.
            "lifecycle": {"preStop": {"sleep": {"seconds": config.pre_stop_sleep_s}}},
            "volumeMounts": [
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": True},
            ],
        }
        volumes = [
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "api-keys", "secret": {"secretName": keys_secret.metadata.name}},
        ]
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(GATEWAY_NAME),
            spec=as_manifest({
                "replicas": config.min_replicas,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    # A new keys file rolls the pods, so revoked keys stop working at once.
                    "metadata": {"labels": labels, "annotations": {"llm-platform/api-keys-revision": _digest(keys)}},
                    "spec": cpu_pod_spec(container, gateway_grace_period_s(config), volumes),
                },
            }),
            opts=autoscaled(pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=args.capacity))),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(GATEWAY_NAME),
            spec=as_manifest({
                "type": "ClusterIP",
                "selector": labels,
                "ports": [{"name": contracts.METRICS_PORT_NAME, "port": contracts.GATEWAY_PORT,
                           "targetPort": contracts.METRICS_PORT_NAME}],
            }),
            opts=on_cluster,
        )
        cpu_hpa(f"{name}-hpa", GATEWAY_NAME, args.namespace, labels, config.min_replicas, config.max_replicas,
                config.cpu_target_percent, on_cluster)
        one_at_a_time_budget(f"{name}-pdb", meta(GATEWAY_NAME), labels, on_cluster)
        ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata={**meta(GATEWAY_NAME), "annotations": self._alb_annotations(args)},
            spec=as_manifest({
                "ingressClassName": "alb",
                "rules": [{
                    **({"host": args.domain} if args.domain else {}),
                    "http": {"paths": [{
                        "path": prefix,
                        "pathType": "Prefix",
                        "backend": {"service": {"name": service.metadata.name,
                                                "port": {"name": contracts.METRICS_PORT_NAME}}},
                    } for prefix in PUBLIC_PATH_PREFIXES]},
                }],
            }),
            opts=pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=[args.load_balancer_controller])
            ),
        )

        self.ingress = ingress
        self.in_cluster_url = (
            f"http://{GATEWAY_NAME}.{args.namespace_name}.svc.cluster.local:{contracts.GATEWAY_PORT}"
        )
        self.load_balancer_hostname = ingress.status.apply(_load_balancer_hostname)
        if args.domain:
            self.url = pulumi.Output.from_input(f"https://{args.domain}")
        else:
            self.url = self.load_balancer_hostname.apply(lambda hostname: f"http://{hostname}" if hostname else "")
        self.register_outputs({"url": self.url, "load_balancer_hostname": self.load_balancer_hostname,
                               "in_cluster_url": self.in_cluster_url, "deployment": deployment.id})

    @staticmethod
    def _alb_annotations(args: GatewayArgs) -> dict[str, pulumi.Input[str]]:
        prefix = "alb.ingress.kubernetes.io"
        annotations: dict[str, pulumi.Input[str]] = {
            f"{prefix}/scheme": "internet-facing",
            f"{prefix}/load-balancer-name": args.load_balancer_name,
            f"{prefix}/target-type": "ip",
            f"{prefix}/healthcheck-path": READY_PATH,
            # Streams and held requests send nothing for a while: the ALB default of 60 s would cut them.
            f"{prefix}/load-balancer-attributes": f"idle_timeout.timeout_seconds={args.config.idle_timeout_s}",
            f"{prefix}/listen-ports": json.dumps([{"HTTP": 80}]),
        }
        if args.certificate_arn is not None:
            annotations[f"{prefix}/listen-ports"] = json.dumps([{"HTTP": 80}, {"HTTPS": 443}])
            annotations[f"{prefix}/certificate-arn"] = args.certificate_arn
            annotations[f"{prefix}/ssl-redirect"] = "443"
        if args.web_acl_arn is not None:
            annotations[f"{prefix}/wafv2-acl-arn"] = args.web_acl_arn
        return annotations


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_balancer_hostname(status: Any) -> str:
    """The ALB's DNS name once the controller has provisioned it; empty until then."""
    ingress = (getattr(getattr(status, "load_balancer", None), "ingress", None) or [None])[0]
    return getattr(ingress, "hostname", None) or ""
