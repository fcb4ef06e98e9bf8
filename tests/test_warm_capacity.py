"""Warm GPU capacity on a schedule: a placeholder any pod preempts, holding a GPU node with the vLLM image on it,
scaled by KEDA's cron scaler in the stack's time zone (prod: business hours in us-west-2's)."""

from typing import Any

import pytest
from k8s_schemas import validate_manifest

from components import contracts, upstream
from infra.offline import Graph
from infra.render import kubernetes_objects
from stacks.loader import ConfigError, validate

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PRIORITY_CLASS = "kubernetes:scheduling.k8s.io/v1:PriorityClass"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"


def _pod(graph: Graph, name: str) -> dict[str, Any]:
    return graph.one(DEPLOYMENT, name).inputs["spec"]["template"]["spec"]


def test_placeholder_holds_a_gpu_at_a_priority_every_pod_preempts(prod_graph: Graph) -> None:
    priority = prod_graph.one(PRIORITY_CLASS)
    assert priority.inputs["value"] < 0, priority.urn  # the vLLM pod has the default priority, 0
    assert priority.inputs["preemptionPolicy"] == "Never" and not priority.inputs["globalDefault"], priority.urn
    pod = _pod(prod_graph, "warm-capacity-deployment")
    assert pod["priorityClassName"] == priority.inputs["metadata"]["name"]
    assert pod["nodeSelector"] == {contracts.POOL_LABEL_KEY: contracts.GPU_POOL}
    assert {**contracts.GPU_TAINT, "operator": "Equal"} in pod["tolerations"]
    (pause,) = pod["containers"]
    assert pause["resources"]["requests"]["nvidia.com/gpu"] == pause["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pause["image"] in upstream.facts("images")["images"], "the pause image is pinned and recorded"
    assert pod["terminationGracePeriodSeconds"] == 0


def test_placeholder_pulls_the_vllm_pods_images_onto_its_node(prod_graph: Graph) -> None:
    """The vLLM image and the compile cache's sync image (prod's init containers): a warm start pulls nothing."""
    vllm = _pod(prod_graph, "vllm-deployment")
    pulls = _pod(prod_graph, "warm-capacity-deployment")["initContainers"]
    assert {c["image"] for c in vllm["containers"] + vllm["initContainers"]} == {c["image"] for c in pulls}
    assert all("nvidia.com/gpu" not in pull["resources"]["requests"] for pull in pulls)


def test_cron_trigger_follows_the_schedule_in_the_stacks_time_zone(prod_graph: Graph) -> None:
    scaled = prod_graph.one(SCALED_OBJECT, "warm-capacity-scaledobject")
    spec = scaled.inputs["spec"]
    assert spec["scaleTargetRef"]["name"] == "gpu-warm-placeholder", scaled.urn
    assert spec["minReplicaCount"] == 0, "no warm node outside the schedule"
    (trigger,) = spec["triggers"]
    facts = upstream.facts("keda-cron")
    assert trigger["type"] == facts["type"]
    assert set(trigger["metadata"]) == set(facts["required"]), scaled.urn
    assert trigger["metadata"] == {
        "timezone": "America/Los_Angeles", "start": "0 8 * * 1-5", "end": "0 18 * * 1-5", "desiredReplicas": "1",
    }


def test_rendered_scaled_object_validates_against_the_keda_crd(prod_graph: Graph) -> None:
    (scaled,) = [o for o in kubernetes_objects(prod_graph)
                 if o["kind"] == "ScaledObject" and o["metadata"]["name"] == "gpu-warm-placeholder"]
    assert validate_manifest(scaled) == []


def test_no_warm_gpu_before_a_model_is_published(prod_graph: Graph) -> None:
    """Shipped prod has no published model yet: like vLLM's, the placeholder's autoscaler is paused at zero."""
    annotations = prod_graph.one(SCALED_OBJECT, "warm-capacity-scaledobject").inputs["metadata"]["annotations"]
    assert annotations == {"autoscaling.keda.sh/paused-replicas": "0"}


def test_dev_keeps_no_warm_capacity(dev_graph: Graph) -> None:
    assert not [r for r in dev_graph.resources if r.name.startswith("warm-capacity")]


@pytest.mark.parametrize(
    ("warm", "key", "message"),
    [
        ({"timezone": "Pacific Time"}, "serving.warmCapacity", "IANA time zone"),
        ({"start": "8am"}, "serving.warmCapacity.start", "pattern"),
        ({"start": "0 8 * * *", "end": "0 8 * * *"}, "serving.warmCapacity", "empty"),
    ],
)
def test_bad_schedule_names_the_key(warm: dict[str, str], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate("dev", {"serving": {"warmCapacity": warm}}, "Pulumi.dev.yaml")
    assert f"llm-platform:{key}:" in str(error.value) and message in str(error.value)
