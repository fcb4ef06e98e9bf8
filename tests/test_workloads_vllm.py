"""The vLLM workload and its KEDA ScaledObject, as the offline engine sees them in the dev and prod graphs."""

import json
import re
from typing import Any

import pytest

from components import contracts, upstream
from components.versions import VLLM_IMAGE
from components.vllm import VllmConfig, vllm_arguments
from infra.offline import Graph

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"

# vLLM V1 metric names (REFERENCE.md); anything else in a query matches nothing in Prometheus.
VLLM_METRICS = {
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
    "vllm:num_preemptions_total", "vllm:prefix_cache_queries", "vllm:prefix_cache_hits",
    "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
}


def _vllm_pod(graph: Graph) -> dict[str, Any]:
    spec: dict[str, Any] = graph.one(DEPLOYMENT, "vllm-deployment").inputs["spec"]["template"]["spec"]
    return spec


def _scaled_object(graph: Graph) -> dict[str, Any]:
    spec: dict[str, Any] = graph.one(SCALED_OBJECT, "vllm-scaledobject").inputs["spec"]
    return spec


def test_vllm_image_is_the_pinned_one(graph: Graph) -> None:
    assert [c["image"] for c in _vllm_pod(graph)["containers"]] == [VLLM_IMAGE]
    assert not VLLM_IMAGE.endswith(":latest")


def test_vllm_pods_schedule_only_on_the_gpu_pool(graph: Graph) -> None:
    pod = _vllm_pod(graph)
    pools = [resource.inputs["spec"]["template"] for resource in graph.of_type(NODE_POOL)]
    gpu_pools = [p for p in pools if p.get("metadata", {}).get("labels", {}).get(contracts.POOL_LABEL_KEY)
                 == contracts.GPU_POOL]
    labels = gpu_pools[0]["metadata"]["labels"] if gpu_pools else {contracts.POOL_LABEL_KEY: contracts.GPU_POOL}
    taints = gpu_pools[0]["spec"].get("taints", []) if gpu_pools else [contracts.GPU_TAINT]
    assert pod["nodeSelector"].items() <= labels.items()
    for taint in taints:
        assert any(
            t["key"] == taint["key"] and t["effect"] == taint["effect"]
            and (t.get("operator") == "Exists" or t.get("value") == taint.get("value"))
            for t in pod["tolerations"]
        ), f"vllm-deployment does not tolerate the GPU pool taint {taint}"


def test_vllm_requests_gpus_and_sets_limits(graph: Graph) -> None:
    (container,) = _vllm_pod(graph)["containers"]
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
    assert {"cpu", "memory"} <= resources["limits"].keys() and {"cpu", "memory"} <= resources["requests"].keys()


def test_vllm_has_memory_backed_shm(graph: Graph) -> None:
    pod = _vllm_pod(graph)
    (container,) = pod["containers"]
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_vllm_probes_allow_a_slow_load(graph: Graph) -> None:
    (container,) = _vllm_pod(graph)["containers"]
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    # At least twice seed 004's load (22.8 s) and uncached torch.compile (60 s), weights aside.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 2 * (22.8 + 60)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["ports"] == [{"name": contracts.METRICS_PORT_NAME, "containerPort": contracts.VLLM_PORT}]


def test_vllm_grace_period_covers_prestop_and_drain(graph: Graph) -> None:
    pod = _vllm_pod(graph)
    (container,) = pod["containers"]
    args = container["args"]
    shutdown_timeout = int(args[args.index("--shutdown-timeout") + 1])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert shutdown_timeout > 0, "--shutdown-timeout 0 aborts in-flight requests"
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + shutdown_timeout


def test_vllm_arguments_use_exact_flags_and_seed_numbers(graph: Graph) -> None:
    (container,) = _vllm_pod(graph)["containers"]
    args = container["args"]
    assert upstream.vllm_flag_problems(args) == []
    # Dev pulls seed 000's model from the Hub; prod streams from its bucket (tests/test_model_source.py).
    assert args[0] == ("Qwen/Qwen2.5-7B-Instruct" if graph.stack == "dev" else f"s3://{graph.outputs['modelBucketName']}/")
    expected = {"--max-model-len": "4096", "--max-num-seqs": "8", "--gpu-memory-utilization": "0.9",
                "--generation-config": "vllm"}
    assert {flag: args[args.index(flag) + 1] for flag in expected} == expected


def test_vllm_arguments_stream_from_s3_with_quantization() -> None:
    config = VllmConfig(model_source="s3", model="models/mistral-7b-awq", quantization="awq_marlin",
                        enable_prefix_caching=False)
    args = vllm_arguments(config, "s3://bucket/models/mistral-7b-awq/")
    assert args[0] == "s3://bucket/models/mistral-7b-awq/"
    assert args[args.index("--load-format") + 1] == "runai_streamer"
    extra = json.loads(args[args.index("--model-loader-extra-config") + 1])
    # 4 GiB in bytes; keys as the pinned vLLM's runai loader accepts them (components/upstream/vllm-runtime.json).
    assert extra == {"concurrency": 16, "memory_limit": 4 * 1024**3}
    assert set(extra) <= set(upstream.facts("vllm-runtime")["runaiStreamerExtraConfigKeys"])
    assert args[args.index("--quantization") + 1] == "awq_marlin"
    assert "--disable-prefix-caching" in args
    assert upstream.vllm_flag_problems(args) == []


def test_vllm_service_account_gets_the_model_reader_role(graph: Graph) -> None:
    association = graph.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "vllm-model-reader")
    assert association.inputs["namespace"] == contracts.SERVING_NAMESPACE
    assert association.inputs["serviceAccount"] == _vllm_pod(graph)["serviceAccountName"]
    assert association.inputs["roleArn"] == graph.outputs["modelReaderRoleArn"]


def test_vllm_has_a_clusterip_service_and_pdb(graph: Graph) -> None:
    service = graph.one("kubernetes:core/v1:Service", "vllm-service").inputs["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == contracts.VLLM_PORT
    assert service["selector"] == {contracts.APP_NAME_LABEL: contracts.VLLM_APP}
    pdb = graph.one("kubernetes:policy/v1:PodDisruptionBudget", "vllm-pdb").inputs["spec"]
    assert pdb["maxUnavailable"] == 1


def test_scaled_object_queries_only_real_vllm_metrics(graph: Graph) -> None:
    for trigger in _scaled_object(graph)["triggers"]:
        names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\{)", trigger["metadata"]["query"]))
        vllm_names = {name for name in names if name.startswith("vllm")}
        assert vllm_names <= VLLM_METRICS, f"trigger {trigger['name']} queries unknown metrics {vllm_names}"
        assert 'namespace="llm-serving"' in trigger["metadata"]["query"]


def test_scaled_object_weights_waiting_requests_and_sets_hpa_behaviour(graph: Graph) -> None:
    spec = _scaled_object(graph)
    formula = spec["advanced"]["scalingModifiers"]["formula"]
    assert "waiting * 10" in formula and "running" in formula
    assert {t["name"] for t in spec["triggers"]} >= {"running", "waiting"}
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 2, "periodSeconds": 60}]
    assert "behavior" not in spec
    assert spec["scaleTargetRef"]["name"] == graph.one(DEPLOYMENT, "vllm-deployment").inputs["metadata"]["name"]


def test_dev_scales_to_zero_on_the_gateways_held_requests(dev_graph: Graph) -> None:
    spec = _scaled_object(dev_graph)
    assert spec["minReplicaCount"] == 0
    pending = next(t for t in spec["triggers"] if t["name"] == "pending")
    assert pending["metadata"]["query"].startswith("sum(gateway_pending_requests{")
    assert "pending" in spec["advanced"]["scalingModifiers"]["formula"]


def test_prod_keeps_warm_replicas_and_a_fallback(prod_graph: Graph, dev_graph: Graph) -> None:
    prod = _scaled_object(prod_graph)
    assert prod["minReplicaCount"] >= 1
    assert prod["fallback"]["replicas"] >= 1
    assert "fallback" not in _scaled_object(dev_graph)
    assert prod["maxReplicaCount"] > _scaled_object(dev_graph)["maxReplicaCount"]


@pytest.mark.parametrize("output", ["vllmUrl"])
def test_vllm_url_is_the_in_cluster_service(graph: Graph, output: str) -> None:
    assert graph.outputs[output] == "http://vllm.llm-serving.svc.cluster.local:8000"


def test_pulumi_waits_out_a_cold_start(graph: Graph) -> None:
    """`pulumi up` must not fail while a new GPU node boots, pulls the image and loads the model."""
    deployment = graph.one(DEPLOYMENT, "vllm-deployment")
    (container,) = _vllm_pod(graph)["containers"]
    startup = container["startupProbe"]
    model_load_s = startup["periodSeconds"] * startup["failureThreshold"]
    for operation in ("create", "update"):
        waited_s = int(deployment.custom_timeouts[operation].removesuffix("s"))
        # Seed 004: a Spot node is Ready in 47 s, an 8 GB image pulls in 44 s with SOCI (minutes without).
        assert waited_s >= model_load_s + 47 + 44, f"{operation} gives up before node, image and model are ready"


def _compile_cache_volume(graph: Graph) -> dict:
    pod = _vllm_pod(graph)
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    root = env[upstream.facts("vllm-runtime")["cacheRootEnv"]]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == root]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return volume


def test_dev_vllm_keeps_its_compile_cache_on_the_nodes_disk(dev_graph: Graph) -> None:
    """torch.compile artifacts go to VLLM_CACHE_ROOT (the pinned vLLM's variable), mounted from the AL2023 node's
    instance-store RAID0 (/mnt/k8s-disks/0, amazon-eks-ami setup-local-disks), so a repeat start on the node
    reuses them."""
    volume = _compile_cache_volume(dev_graph)
    assert volume["hostPath"]["path"].startswith("/mnt/k8s-disks/0/")
    assert volume["hostPath"]["type"] == "DirectoryOrCreate"


def test_prod_vllm_keeps_its_compile_cache_in_the_pod_on_bottlerocket(prod_graph: Graph) -> None:
    """On Bottlerocket a hostPath one pod wrote the next cannot use (SELinux categories per pod,
    bottlerocket-os/bottlerocket#2417): the cache is an emptyDir, on the instance store with kubelet's directory,
    and the shared cache in the model bucket fills it."""
    assert "#2417" in str(upstream.facts("bottlerocket")["hostPath"]["crossPodSharing"])
    volume = _compile_cache_volume(prod_graph)
    assert "hostPath" not in volume and "emptyDir" in volume
