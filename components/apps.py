"""Extra CPU services that call the gateway: per app a Deployment, a ClusterIP Service and a CPU HPA."""

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import contracts
from components.gateway import cpu_hpa, cpu_pod_spec, http_probes, restricted_container_security
from components.vllm import as_manifest
from stacks.serving_config import AppConfig

APP_GRACE_PERIOD_S = 30


@dataclass(frozen=True)
class AppsArgs:
    apps: list[AppConfig]
    namespace: pulumi.Input[str]
    gateway_url: str
    kubernetes_provider: k8s.Provider


class Apps(pulumi.ComponentResource):
    def __init__(self, name: str, args: AppsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Apps", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider)
        for app in args.apps:
            labels = {contracts.APP_NAME_LABEL: app.name}
            metadata = as_manifest({"name": app.name, "namespace": args.namespace, "labels": labels})
            env = {**app.env, "GATEWAY_URL": args.gateway_url}
            container = {
                "name": app.name,
                "image": app.image,
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
                opts=on_cluster,
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
