"""The gateway and the extra app workloads, as the offline engine sees them."""

import json
from pathlib import Path
from typing import Any

from components import contracts
from components.gateway import ApiKey, GatewayConfig, keys_file
from infra.offline import Graph
from serving.gateway.keys import ApiKey as GatewayKey
from serving.gateway.keys import load_keys
from serving.gateway.settings import OPTIONS, Settings

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
ALB = "alb.ingress.kubernetes.io"


def _pod(graph: Graph, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = graph.one(DEPLOYMENT, name).inputs["spec"]["template"]["spec"]
    return spec


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_gateway_runs_non_root_read_only_on_the_cpu_pool(graph: Graph) -> None:
    pod = _pod(graph, "gateway-deployment")
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["nodeSelector"] == {contracts.POOL_LABEL_KEY: contracts.CPU_POOL}
    assert "tolerations" not in pod


def test_gateway_probes_follow_the_contract(graph: Graph) -> None:
    (container,) = _pod(graph, "gateway-deployment")["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["ports"] == [{"name": contracts.METRICS_PORT_NAME, "containerPort": contracts.GATEWAY_PORT}]


def test_gateway_grace_period_covers_prestop_and_drain(graph: Graph) -> None:
    pod = _pod(graph, "gateway-deployment")
    (container,) = pod["containers"]
    drain = int(_env(container)["GATEWAY_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] >= container["lifecycle"]["preStop"]["sleep"]["seconds"] + drain


def test_gateway_settings_come_from_the_stack(graph: Graph) -> None:
    (container,) = _pod(graph, "gateway-deployment")["containers"]
    env = _env(container)
    assert env["GATEWAY_UPSTREAM"] == graph.outputs["vllmUrl"]
    assert env["GATEWAY_REDIS_URL"] == f"rediss://{graph.outputs['redisEndpoint']}:6379/0"
    assert env["GATEWAY_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "gateway-redis", "key": "password"}}
    # The name clients send: the Hub id in dev, prod's stable servedModelName (its bucket prefix changes per version).
    served = "Qwen/Qwen2.5-7B-Instruct" if graph.stack == "dev" else "qwen2.5-7b-instruct"
    assert env["GATEWAY_MODELS"] == f"{served}=4096"
    assert env["GATEWAY_API_KEYS_FILE"] == "/etc/gateway/keys.json"
    assert int(env["GATEWAY_HOLD_TIMEOUT_S"]) > 0
    keys_volume = next(v for v in _pod(graph, "gateway-deployment")["volumes"] if v["name"] == "api-keys")
    assert keys_volume["secret"]["secretName"] == "gateway-api-keys"


def test_redis_password_secret_stays_secret(graph: Graph) -> None:
    secret = graph.one("kubernetes:core/v1:Secret", "gateway-redis")
    assert secret.inputs["stringData"] == "[secret]"


def test_every_workload_container_sets_requests_and_limits(graph: Graph) -> None:
    for deployment in graph.of_type(DEPLOYMENT):
        for container in deployment.inputs["spec"]["template"]["spec"]["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), deployment.name
            assert {"cpu", "memory"} <= resources["limits"].keys(), deployment.name


def test_ingress_is_an_internet_facing_alb_with_a_long_idle_timeout(graph: Graph) -> None:
    ingress = graph.one("kubernetes:networking.k8s.io/v1:Ingress", "gateway-ingress").inputs
    annotations = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert annotations[f"{ALB}/scheme"] == "internet-facing"
    assert annotations[f"{ALB}/target-type"] == "ip"
    assert annotations[f"{ALB}/healthcheck-path"] == "/ready"
    idle = int(annotations[f"{ALB}/load-balancer-attributes"].removeprefix("idle_timeout.timeout_seconds="))
    (container,) = _pod(graph, "gateway-deployment")["containers"]
    assert idle > int(_env(container)["GATEWAY_HOLD_TIMEOUT_S"]) >= 60


def test_prod_ingress_terminates_tls_behind_waf(prod_graph: Graph, dev_graph: Graph) -> None:
    prod = prod_graph.one("kubernetes:networking.k8s.io/v1:Ingress", "gateway-ingress").inputs["metadata"]
    assert prod["annotations"][f"{ALB}/certificate-arn"] == prod_graph.outputs["certificateArn"]
    assert prod["annotations"][f"{ALB}/wafv2-acl-arn"] == prod_graph.outputs["webAclArn"]
    assert prod["annotations"][f"{ALB}/ssl-redirect"] == "443"
    assert {"HTTPS": 443} in json.loads(prod["annotations"][f"{ALB}/listen-ports"])
    assert prod_graph.outputs["gatewayUrl"] == "https://llm.example.com"
    dev = dev_graph.one("kubernetes:networking.k8s.io/v1:Ingress", "gateway-ingress").inputs["metadata"]
    assert f"{ALB}/certificate-arn" not in dev["annotations"]


def test_gateway_is_multi_replica_in_prod(prod_graph: Graph, dev_graph: Graph) -> None:
    prod = prod_graph.one(HPA, "gateway-hpa").inputs["spec"]
    dev = dev_graph.one(HPA, "gateway-hpa").inputs["spec"]
    assert prod["minReplicas"] >= 2 and dev["minReplicas"] == 1
    assert prod["scaleTargetRef"]["name"] == "gateway"


def test_dev_runs_the_seed_flask_app_with_a_cpu_hpa(dev_graph: Graph, prod_graph: Graph) -> None:
    pod = _pod(dev_graph, "apps-flask-api")
    (container,) = pod["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 5006}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert _env(container)["GATEWAY_URL"] == "http://gateway.llm-serving.svc.cluster.local:8080"
    assert not container["image"].endswith(":latest")
    hpa = dev_graph.one(HPA, "apps-flask-api").inputs["spec"]
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert dev_graph.one("kubernetes:core/v1:Service", "apps-flask-api").inputs["spec"]["ports"][0]["port"] == 5006
    assert not [r for r in prod_graph.of_type(DEPLOYMENT) if r.name.startswith("apps-")]


def test_gateway_env_is_exactly_what_the_gateway_accepts(graph: Graph) -> None:
    """The Deployment's settings, resolved by the gateway's own parser, give the stack's configuration."""
    (container,) = _pod(graph, "gateway-deployment")["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    assert {name for name in _env(container) if name.startswith("GATEWAY_")} <= {opt.env for opt in OPTIONS}
    settings = Settings.resolve({}, env)
    gateway = graph.config.resolved_gateway()
    assert settings.upstream == graph.outputs["vllmUrl"]
    assert settings.models == {graph.config.serving.vllm.name_for_clients: graph.config.serving.vllm.max_model_len}
    assert (settings.workers, settings.hold_timeout_s, settings.max_tokens, settings.rate_limit_rpm) == (
        gateway.workers, gateway.hold_timeout_s, gateway.max_tokens, gateway.rate_limit_rpm
    )
    assert (settings.local_cache_mb, settings.rate_limit_lease_percent) == (
        gateway.local_cache_mb, gateway.rate_limit_lease_percent
    )


def test_configured_api_keys_load_in_the_gateway(tmp_path: Path) -> None:
    """What the stack writes into the keys Secret is a keys file the gateway reads, limits included."""
    team_a, team_b = ApiKey(id="team-a", sha256="ab" * 32, rpm=60), ApiKey(id="team-b", sha256="cd" * 32)
    config = GatewayConfig(api_keys=[team_a, team_b])
    path = tmp_path / "keys.json"
    path.write_text(keys_file(config))
    keys = load_keys(str(path), default_rpm=config.rate_limit_rpm, default_tpm=config.rate_limit_tpm)
    assert keys["ab" * 32] == GatewayKey("team-a", 60, config.rate_limit_tpm)
    assert keys["cd" * 32] == GatewayKey("team-b", config.rate_limit_rpm, config.rate_limit_tpm)


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(graph: Graph) -> None:
    for deployment in graph.of_type(DEPLOYMENT):
        assert "spec.replicas" in deployment.ignore_changes, f"{deployment.urn} would reset its autoscaler"


def test_dev_gateway_url_is_the_alb_the_controller_provisions(dev_graph: Graph) -> None:
    """Without a domain the URL is the ALB's hostname from the Ingress status, plain HTTP; the ALB is named
    after the cluster (the controller's load-balancer-name annotation)."""
    url = dev_graph.outputs["gatewayUrl"]
    assert url == f"http://{dev_graph.outputs['gatewayLoadBalancer']}"
    assert url.startswith("http://llm-dev-gateway-") and url.endswith(".us-west-2.elb.amazonaws.com")
