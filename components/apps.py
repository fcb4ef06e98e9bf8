"""Extra CPU services that call the gateway: per app a Deployment, a ClusterIP Service and a CPU HPA."""

import re
from dataclasses import dataclass
from typing import Self

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components import contracts
from components.config_base import StrictModel
from components.images import BuildConfig
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
    restricted_container_security,
)

APP_GRACE_PERIOD_S = 30


class AppConfig(StrictModel):
    """A CPU service that calls the gateway (its URL arrives in env GATEWAY_URL)."""

    name: str = Field(pattern=DNS_LABEL)
    image: PinnedImage | None = Field(default=None, description="An existing image; or set build.")
    build: BuildConfig | None = Field(default=None, description="Sources the stack builds and pushes to its ECR.")
    port: int = Field(ge=1, le=65535)
    health_path: str = Field(default="/health", pattern=r"^/")
    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(default=3, ge=1, le=100)
    cpu_target_percent: int = Field(default=70, ge=10, le=100)
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=lambda: SMALL_CPU_SERVICE)

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if (self.image is None) == (self.build is None):
            raise ValueError(f"app {self.name}: set exactly one of image (an existing image) or build (sources)")
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


@dataclass(frozen=True)
class AppsArgs:
    apps: list[AppConfig]
    # Per app name: its configured image, or the digest the stack built and pushed.
    images: dict[str, pulumi.Input[str]]
    namespace: pulumi.Input[str]
    gateway_url: str
    kubernetes_provider: k8s.Provider
    # The CPU NodePool the pods schedule on.
    capacity: list[pulumi.Resource]


class Apps(pulumi.ComponentResource):
    def __init__(self, name: str, args: AppsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Apps", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider)
        on_pool = pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=args.capacity))
        for app in args.apps:
            labels = {contracts.APP_NAME_LABEL: app.name}
            metadata = as_manifest({"name": app.name, "namespace": args.namespace, "labels": labels})
            env = {**app.env, "GATEWAY_URL": args.gateway_url}
            container = {
                "name": app.name,
                "image": args.images[app.name],
                "ports": [{"name": "http", "containerPort": app.port}],
                "env": [{"name": key, "value": value} for key, value in env.items()],
                "resources": app.resources.as_kubernetes(),
                **http_probes("http", app.health_path, app.health_path),
                "securityContext": restricted_container_security(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
            k8s.apps.v1.Deployment(
                f"{name}-{app.name}",
                metadata=metadata,
                spec=as_manifest({
                    "replicas": app.min_replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": cpu_pod_spec(container, APP_GRACE_PERIOD_S, [{"name": "tmp", "emptyDir": {}}]),
                    },
                }),
                opts=autoscaled(on_pool),
            )
            k8s.core.v1.Service(
                f"{name}-{app.name}",
                metadata=metadata,
                spec=as_manifest({"type": "ClusterIP", "selector": labels,
                                  "ports": [{"name": "http", "port": app.port, "targetPort": "http"}]}),
                opts=on_cluster,
            )
            cpu_hpa(f"{name}-{app.name}", app.name, args.namespace, labels, app.min_replicas, app.max_replicas,
                    app.cpu_target_percent, on_cluster)
        self.register_outputs({"apps": [app.name for app in args.apps]})
