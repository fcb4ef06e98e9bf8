"""`gpu_node_images` lists exactly the images of the pods the rendered stack places on its GPU pool, under the
references those pod specs name: change a component's image and this fails until the list follows."""

from typing import Any

import pytest
from graph_helpers import prod_values

from components import contracts
from infra.mocks import ACCOUNT_ID
from infra.offline import Graph, build_graph
from infra.render import kubernetes_objects
from stacks.gpu_images import gpu_node_images, normalized
from stacks.loader import as_engine_config, validate

SECRET = "arn:aws:secretsmanager:us-west-2:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
GPU_TAINT_KEY = "nvidia.com/gpu"
# The Bottlerocket stacks this command serves: with and without the pull-through cache, compile cache, placeholder.
VARIANTS = {
    "cache-everything": {
        "addons": {"karpenter": {"gpuPool": {"amiAlias": "bottlerocket@v1.69.0"}},
                   "imageCache": {"dockerHubCredentialArn": SECRET}},
    },
    "bare": {
        "addons": {"karpenter": {"gpuPool": {"amiAlias": "bottlerocket@v1.69.0"}}},
        "serving": {"vllm": {"sharedCompileCache": False}, "warmCapacity": {"enabled": False}},
    },
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def graph(request: pytest.FixtureRequest) -> Graph:
    values = prod_values(VARIANTS[request.param])
    return build_graph(validate("prod", values, request.param), "prod", as_engine_config(values))


def targets_gpu_pool(pod: dict[str, Any]) -> bool:
    """A pod meant for GPU nodes: it tolerates the GPU taint by key, or selects the GPU pool. (DaemonSets that
    tolerate every taint also land there; the list leaves them out on purpose, see stacks/gpu_images.py.)"""
    tolerated = any(t.get("key") == GPU_TAINT_KEY for t in pod.get("tolerations") or [])
    selected = (pod.get("nodeSelector") or {}).get(contracts.POOL_LABEL_KEY) == contracts.GPU_POOL
    required = str((pod.get("affinity") or {}).get("nodeAffinity", {}))
    return tolerated or selected or (contracts.POOL_LABEL_KEY in required and f"'{contracts.GPU_POOL}'" in required)


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any] | None:
    spec = manifest.get("spec") or {}
    if manifest["kind"] == "Pod":
        return spec
    if manifest["kind"] == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    return spec.get("template", {}).get("spec") if isinstance(spec.get("template"), dict) else None


def rendered_gpu_images(graph: Graph) -> dict[str, set[str]]:
    """Image reference -> the objects that run it on GPU nodes: plain workloads' containers and init containers,
    and charts placed on the pool, whose DaemonSet image is `<image.repository>:<image.tag>` (the dcgm-exporter
    chart's template; a chart placed there without both values runs an image nobody listed, which fails below)."""
    found: dict[str, set[str]] = {}
    for manifest in kubernetes_objects(graph):
        pod = pod_spec(manifest)
        if pod and targets_gpu_pool(pod):
            for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
                found.setdefault(container["image"], set()).add(f"{manifest['kind']}/{manifest['metadata']['name']}")
    for release in graph.of_type(HELM_RELEASE):
        values = release.inputs.get("values") or {}
        if targets_gpu_pool(values):
            image = values.get("image") or {}
            reference = f"{image.get('repository')}:{image.get('tag')}"
            found.setdefault(reference, set()).add(release.urn)
    return found


def test_the_list_is_exactly_what_gpu_pods_run(graph: Graph) -> None:
    rendered = rendered_gpu_images(graph)
    listed = {image.pod for image in gpu_node_images(graph.config, ACCOUNT_ID)}
    assert listed == set(rendered), f"rendered on GPU nodes: {rendered}; listed: {sorted(listed)}"


def test_cached_vllm_is_pulled_from_docker_hub_and_named_as_the_cache_serves_it(graph: Graph) -> None:
    (vllm,) = [image for image in gpu_node_images(graph.config, ACCOUNT_ID) if image.why == "vLLM"]
    if graph.config.addons.image_cache.docker_hub_credential_arn:
        # Hand-written from the ECR user guide's pull-through address: <account>.dkr.ecr.<region>/<prefix>/<repo>.
        assert vllm.containerd_name.startswith("123456789012.dkr.ecr.us-west-2.amazonaws.com/docker-hub/vllm/")
    assert vllm.upstream_name.startswith("docker.io/vllm/vllm-openai:v")


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        # distribution/reference ParseNormalizedNamed: Docker Hub by default, `library/` for official images.
        ("vllm/vllm-openai:v0.33.0", "docker.io/vllm/vllm-openai:v0.33.0"),
        ("busybox", "docker.io/library/busybox:latest"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("public.ecr.aws/aws-cli/aws-cli@sha256:" + "0" * 64, "public.ecr.aws/aws-cli/aws-cli@sha256:" + "0" * 64),
    ],
)
def test_containerd_names(reference: str, name: str) -> None:
    assert normalized(reference) == name
