"""Traces: the gateway's OTLP spans go to an OpenTelemetry Collector (contrib distribution) that batches them and
exports them to AWS X-Ray through a Pod Identity role that may only write traces.

Chart facts: open-telemetry/opentelemetry-helm-charts tag opentelemetry-collector-0.170.0: `mode` and
`image.repository` must be set (templates/NOTES.txt fails otherwise), `alternateConfig` replaces the default
config instead of merging with it, the health_check extension is mandatory, the OTLP/HTTP port is 4318 and the
Service is named after the release. Cost: X-Ray records at about $5 per million traces, hence sampling."""

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components import contracts, iam
from components.config_base import StrictModel
from components.helm import pinned_release
from components.versions import OPENTELEMETRY_COLLECTOR, OTEL_COLLECTOR_IMAGE_REPOSITORY

COLLECTOR_NAME = OPENTELEMETRY_COLLECTOR.name
OTLP_HTTP_PORT = 4318
COLLECTOR_URL = f"http://{COLLECTOR_NAME}.{contracts.MONITORING_NAMESPACE}.svc.cluster.local:{OTLP_HTTP_PORT}"


class TracingConfig(StrictModel):
    enabled: bool = Field(default=True, description="Gateway spans to X-Ray through an OpenTelemetry Collector.")
    sample_ratio: float = Field(default=1.0, gt=0, le=1, description="Share of requests traced (parent-based).")


def collector_config(region: str) -> dict[str, Any]:
    pod_ip = "${env:MY_POD_IP}"
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{pod_ip}:{OTLP_HTTP_PORT}"}}}},
        "processors": {
            "memory_limiter": {"check_interval": "5s", "limit_percentage": 80, "spike_limit_percentage": 25},
            "batch": {},
        },
        "exporters": {"awsxray": {"region": region}},
        "extensions": {"health_check": {"endpoint": f"{pod_ip}:13133"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"], "exporters": ["awsxray"]}
            },
        },
    }


def collector_values(region: str) -> dict[str, Any]:
    return {
        "mode": "deployment",
        "image": {"repository": OTEL_COLLECTOR_IMAGE_REPOSITORY},
        "serviceAccount": {"create": True, "name": COLLECTOR_NAME},
        "alternateConfig": collector_config(region),
        # memory_limiter's percentages are of this limit.
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }


def gateway_env(config: TracingConfig) -> dict[str, str]:
    """OpenTelemetry SDK environment variables for the gateway (serving/gateway/tracing.py exports over OTLP/HTTP
    when OTEL_EXPORTER_OTLP_ENDPOINT is set; the SDK reads the sampler variables itself)."""
    if not config.enabled:
        return {}
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR_URL,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(config.sample_ratio),
    }


def xray_writer_policy() -> pulumi.Output[str]:
    return iam.document([
        {"Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"}
    ])


@dataclass(frozen=True)
class TracingArgs:
    region: str
    cluster_name: pulumi.Input[str]
    kubernetes_provider: k8s.Provider
    # The metrics stack's release: it creates the monitoring namespace (and waits for the Pod Identity agent).
    depends_on: list[pulumi.Resource]


class Tracing(pulumi.ComponentResource):
    def __init__(self, name: str, args: TracingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Tracing", name, None, opts)
        writer = iam.pod_identity_role(
            f"{name}-collector",
            "OpenTelemetry Collector: write gateway traces to X-Ray",
            xray_writer_policy(),
            args.cluster_name,
            contracts.MONITORING_NAMESPACE,
            COLLECTOR_NAME,
            self,
        )
        pinned_release(
            name,
            OPENTELEMETRY_COLLECTOR,
            contracts.MONITORING_NAMESPACE,
            collector_values(args.region),
            pulumi.ResourceOptions(
                parent=self, provider=args.kubernetes_provider, depends_on=[*writer.grants, *args.depends_on]
            ),
            timeout_s=600,
        )
        self.register_outputs({"collector_url": COLLECTOR_URL})
