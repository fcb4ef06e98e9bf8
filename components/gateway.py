"""The OpenAI-compatible gateway in front of vLLM: Secrets (Redis auth, API key hashes), Deployment, Service,
HPA and the internet-facing ALB Ingress."""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import contracts
from components.versions import GATEWAY_IMAGE_REPOSITORY, GATEWAY_IMAGE_TAG
from components.vllm import as_manifest
from stacks.serving_config import GatewayConfig

GATEWAY_NAME = "gateway"
GATEWAY_IMAGE = f"{GATEWAY_IMAGE_REPOSITORY}:{GATEWAY_IMAGE_TAG}"
KEYS_DIR = "/etc/gateway"
KEYS_FILE = "keys.json"
HEALTH_PATH = "/health"
READY_PATH = "/ready"
RUN_AS_USER = 10001
GRACE_MARGIN_S = 10


def restricted_pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def cpu_hpa(
    resource_name: str, workload: str, namespace: pulumi.Input[str], labels: dict[str, str],
    min_replicas: int, max_replicas: int, cpu_percent: int, opts: pulumi.ResourceOptions,
) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
    """An HPA on average CPU utilisation of a Deployment named `workload`."""
    return k8s.autoscaling.v2.HorizontalPodAutoscaler(
        resource_name,
        metadata=as_manifest({"name": workload, "namespace": namespace, "labels": labels}),
        spec=as_manifest({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {"type": "Resource",
                 "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}
            ],
        }),
        opts=opts,
    )


def cpu_pod_spec(container: dict[str, Any], grace_s: int, volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """Pod spec of a CPU workload: CPU pool, restricted security, spread over zones."""
    return {
        "nodeSelector": {contracts.POOL_LABEL_KEY: contracts.CPU_POOL},
        "securityContext": restricted_pod_security(),
        "terminationGracePeriodSeconds": grace_s,
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": {contracts.APP_NAME_LABEL: container["name"]}}}
        ],
        "containers": [container],
        "volumes": volumes,
    }


def http_probes(port: str | int, liveness_path: str, readiness_path: str) -> dict[str, Any]:
    return {
        "startupProbe": {"httpGet": {"path": liveness_path, "port": port}, "periodSeconds": 2,
                         "failureThreshold": 30},
        "readinessProbe": {"httpGet": {"path": readiness_path, "port": port}, "periodSeconds": 5,
                           "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": liveness_path, "port": port}, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 3},
    }


def gateway_grace_period_s(config: GatewayConfig) -> int:
    return config.pre_stop_sleep_s + config.drain_timeout_s + GRACE_MARGIN_S


@dataclass(frozen=True)
class GatewayArgs:
    config: GatewayConfig
    namespace: pulumi.Input[str]
    namespace_name: str
    upstream_url: str
    models: str
    redis_endpoint: pulumi.Input[str]
    redis_port: pulumi.Input[int]
    redis_auth_token: pulumi.Input[str]
    kubernetes_provider: k8s.Provider
    domain: str | None = None
    certificate_arn: pulumi.Input[str] | None = None
    web_acl_arn: pulumi.Input[str] | None = None


class Gateway(pulumi.ComponentResource):
    url: pulumi.Output[str]
    in_cluster_url: str

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
        keys = {"keys": [key.model_dump(exclude_none=True) for key in config.api_keys]}
        keys_secret = k8s.core.v1.Secret(
            f"{name}-api-keys",
            metadata=meta(f"{GATEWAY_NAME}-api-keys"),
            string_data=as_manifest({KEYS_FILE: json.dumps(keys, indent=2)}),
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
            "GATEWAY_HOLD_TIMEOUT_S": str(config.hold_timeout_s),
            "GATEWAY_UPSTREAM_CONNECT_TIMEOUT_S": str(config.upstream_connect_timeout_s),
            "GATEWAY_UPSTREAM_READ_TIMEOUT_S": str(config.upstream_read_timeout_s),
            "GATEWAY_DRAIN_TIMEOUT_S": str(config.drain_timeout_s),
            "GATEWAY_LOG_LEVEL": config.log_level,
            "OTEL_SERVICE_NAME": GATEWAY_NAME,
        }
        env: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in settings.items()]
        env.append({
            "name": "GATEWAY_REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": redis_secret.metadata.name, "key": "password"}},
        })
        container = {
            "name": GATEWAY_NAME,
            "image": GATEWAY_IMAGE,
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
            opts=on_cluster,
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
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta(GATEWAY_NAME),
            spec=as_manifest({"maxUnavailable": 1, "selector": {"matchLabels": labels}}),
            opts=on_cluster,
        )
        ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata={**meta(GATEWAY_NAME), "annotations": self._alb_annotations(args)},
            spec=as_manifest({
                "ingressClassName": "alb",
                "rules": [{
                    **({"host": args.domain} if args.domain else {}),
                    "http": {"paths": [{
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": service.metadata.name,
                                                "port": {"name": contracts.METRICS_PORT_NAME}}},
                    }]},
                }],
            }),
            opts=on_cluster,
        )

        self.in_cluster_url = (
            f"http://{GATEWAY_NAME}.{args.namespace_name}.svc.cluster.local:{contracts.GATEWAY_PORT}"
        )
        if args.domain:
            self.url = pulumi.Output.from_input(f"https://{args.domain}")
        else:
            self.url = ingress.status.apply(_load_balancer_url)
        self.register_outputs({"url": self.url, "in_cluster_url": self.in_cluster_url,
                               "deployment": deployment.id})

    @staticmethod
    def _alb_annotations(args: GatewayArgs) -> dict[str, pulumi.Input[str]]:
        prefix = "alb.ingress.kubernetes.io"
        annotations: dict[str, pulumi.Input[str]] = {
            f"{prefix}/scheme": "internet-facing",
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


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _load_balancer_url(status: Any) -> str:
    """http://<ALB hostname> once the controller has provisioned it; empty until then."""
    ingress = (getattr(getattr(status, "load_balancer", None), "ingress", None) or [None])[0]
    hostname = getattr(ingress, "hostname", None)
    return f"http://{hostname}" if hostname else ""
