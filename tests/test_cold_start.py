"""The cold-start budget (components/cold_start.py): its stages from configuration, and every wait that must
outlast a cold start derived from it. Expected figures are worked by hand from seed 004's measurements
(g5.2xlarge Spot: node Ready 47 s, 8 GB image with SOCI parallel pull 44 s, 3.9 GiB from S3 in 2.4 s (taken as
1.5 GiB/s), load 22.8 s, torch.compile 7.8 s with a shared cache and 60 s without) and the 5 s startup probe.
Prod has the shared compile cache: 0.5 GiB (coldStart.compileCacheGib's default) synced at 1.5 GiB/s, and its GPU
nodes' data volume comes from a snapshot with the images on it: nothing is pulled, and the 6.3 GiB a vLLM start may
read (measured upper bound, docs/cold-start.md) arrive at EBS's highest volume initialization rate, 300 MiB/s.
Without the snapshot (on AL2023) the image is pulled: 8 GB plus a 0.15 GB sync image with SOCI parallel pull."""

import math
from pathlib import Path
from typing import Any

import pytest
from graph_helpers import prod_values

from components.cold_start import (
    ColdStartConfig,
    ColdStartInputs,
    ModelSizeUnknown,
    cold_start_budget,
    model_size_b,
)
from infra.cost.simulator import settings_from_config
from infra.cost.throughput import throughput
from infra.offline import Graph, build_graph
from stacks.loader import ConfigError, as_engine_config, validate

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
GIB = 2**30

# Prod serves qwen2.5-7b-instruct unquantized from S3: 7e9 parameters x 2 bytes.
PROD_WEIGHTS_S = 14e9 / GIB / 1.5
PROD_CONTAINER_S = PROD_WEIGHTS_S + 22.8 + 7.8 + 5
PROD_WARM_S = 0.5 / 1.5 + PROD_CONTAINER_S
PROD_IMAGE_S = 6.3 * 1024 / 300
PULLED_IMAGE_S = (8 + 0.15) * 44 / 8
PROD_COLD_S = 47 + PROD_IMAGE_S + PROD_WARM_S
# A compile cache miss compiles: the startup probe and the rollout wait allow it.
PROD_MISS_S = 60 - 7.8


def _prod_graph(change: dict[str, Any]) -> Graph:
    values = prod_values(change)
    return build_graph(validate("prod", values, "test"), "prod", as_engine_config(values))


def _waits(graph: Graph) -> dict[str, int]:
    """The waits the rendered stack carries: startup probe window, rollout wait, hold, ALB idle."""
    vllm = graph.one(DEPLOYMENT, "vllm-deployment")
    (container,) = vllm.inputs["spec"]["template"]["spec"]["containers"]
    probe = container["startupProbe"]
    (gateway,) = graph.one(DEPLOYMENT, "gateway-deployment").inputs["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in gateway["env"]}
    (ingress,) = [r for r in graph.of_type(INGRESS) if r.name.startswith("gateway")]
    attributes = ingress.inputs["metadata"]["annotations"]["alb.ingress.kubernetes.io/load-balancer-attributes"]
    return {
        "probe": probe["periodSeconds"] * probe["failureThreshold"],
        "rollout_create": int(vllm.custom_timeouts["create"].removesuffix("s")),
        "rollout_update": int(vllm.custom_timeouts["update"].removesuffix("s")),
        "hold": int(env["GATEWAY_HOLD_TIMEOUT_S"]),
        "idle": int(attributes.removeprefix("idle_timeout.timeout_seconds=")),
    }


def _expected(cold_s: float, container_s: float, miss_s: float = PROD_MISS_S) -> dict[str, int]:
    # probeTolerance 3, holdTolerance 1.5; the idle timeout adds the 300 s upstream read timeout to the hold.
    hold = math.ceil(1.5 * cold_s)
    return {
        "probe": 5 * math.ceil(3 * (container_s + miss_s) / 5),
        "rollout_create": math.ceil(3 * (cold_s + miss_s)),
        "rollout_update": math.ceil(3 * (cold_s + miss_s)),
        "hold": hold,
        "idle": hold + 300,
    }


def test_prod_waits_derive_from_its_budget(prod_graph: Graph) -> None:
    # The prefetched image is read while vLLM starts: its seconds are in the startup probe's window too.
    assert _waits(prod_graph) == _expected(PROD_COLD_S, PROD_IMAGE_S + PROD_CONTAINER_S)


def test_reading_more_of_a_prefetched_image_moves_every_wait_that_covers_a_node(prod_graph: Graph) -> None:
    """Twice the start reads (12.6 GiB) take twice as long to come off the snapshot: rollout, hold, idle and the
    startup probe's window (the reads happen in the container) all grow."""
    graph = _prod_graph({"serving": {"coldStart": {"imageStartReadGib": 12.6}}})
    assert _waits(graph) == _expected(PROD_COLD_S + PROD_IMAGE_S, 2 * PROD_IMAGE_S + PROD_CONTAINER_S)
    assert _waits(graph)["probe"] > _waits(prod_graph)["probe"]


AL2023_PULL = {"addons": {"karpenter": {"gpuPool": {"amiAlias": "al2023@v20260714", "imageSnapshotId": None}}}}


def test_without_a_snapshot_the_image_is_pulled_and_its_size_counts() -> None:
    """On AL2023 (no data volume to prefill) nodes pull with SOCI: a 16 GB image doubles the pull (88 s). The pull
    is over before the container starts: the startup probe's window is the in-container stages only."""
    pulled_cold_s = PROD_COLD_S - PROD_IMAGE_S + PULLED_IMAGE_S
    graph = _prod_graph({**AL2023_PULL, "serving": {"coldStart": {"imageGb": 16}}})
    assert _waits(graph) == _expected(pulled_cold_s + 44, PROD_CONTAINER_S)


def test_explicit_gateway_timeouts_win_over_the_budget() -> None:
    config = validate("prod", prod_values({"serving": {"gateway": {"holdTimeoutS": 120}}}), "t")
    assert config.gateway_timeouts() == (120, 420)


def test_a_derived_idle_timeout_over_the_alb_maximum_is_refused() -> None:
    change = {"serving": {"gateway": {"upstreamReadTimeoutS": 3600, "holdTimeoutS": 600}}}
    with pytest.raises(ConfigError, match="over the ALB's 4000 s"):
        validate("prod", prod_values(change), "Pulumi.prod.yaml")


def test_the_simulator_starts_pods_on_the_budget(prod_graph: Graph) -> None:
    settings = settings_from_config(prod_graph.config, throughput("L4", prod_graph.config.serving.vllm,
                                                                  prod_graph.config.simulation), spot=True)
    assert (settings.node_launch_s, settings.image_pull_s) == (47, pytest.approx(PROD_IMAGE_S))
    assert settings.model_load_s == pytest.approx(PROD_WARM_S)
    assert settings.hold_timeout_s == math.ceil(1.5 * PROD_COLD_S)


IN_CONTAINER = ["weights", "load", "compile", "probe"]


@pytest.mark.parametrize(
    ("inputs", "cold_s", "names"),
    [
        # Hugging Face at the assumed 0.1 GiB/s, plain pull (8 GB at 240 s for 8 GB), no compile cache.
        (ColdStartInputs(False, False, 14, False), 47 + 240 + 14e9 / GIB / 0.1 + 22.8 + 60 + 5,
         ["node", "image", *IN_CONTAINER]),
        # Everything on: S3 streaming, SOCI parallel pull (plus the 0.15 GB sync image), a shared compile cache
        # synced first (0.5 GiB at 1.5 GiB/s).
        (ColdStartInputs(True, True, 3.9 * GIB / 1e9, True),
         47 + 8.15 * 44 / 8 + 0.5 / 1.5 + 3.9 / 1.5 + 22.8 + 7.8 + 5, ["node", "image", "cache", *IN_CONTAINER]),
    ],
)
def test_each_stage_follows_its_setting(inputs: ColdStartInputs, cold_s: float, names: list[str]) -> None:
    budget = cold_start_budget(inputs, ColdStartConfig())
    assert budget.cold_s == pytest.approx(cold_s)
    assert [stage.name for stage in budget.stages()] == names
    assert all(stage.source for stage in budget.stages())


def test_model_size_comes_from_the_name_or_the_override() -> None:
    assert model_size_b("Qwen/Qwen2.5-7B-Instruct", None) == 7
    assert model_size_b("models/llama/3/", 70) == 70
    with pytest.raises(ModelSizeUnknown, match="modelSizeB"):
        model_size_b("models/mystery/1/", None)


def test_a_published_prefix_without_a_size_gets_an_assumed_budget() -> None:
    """Promoting models/<name>/<version>/ must not fail on the budget: a 7B bf16 model is assumed, and said so."""
    config = validate("prod", prod_values({"serving": {"vllm": {"model": "models/qwen-test/1.0.0/"}}}), "t")
    weights = config.cold_start_budget().in_container[0]
    assert weights.seconds == pytest.approx(PROD_WEIGHTS_S)
    assert "assumed" in weights.source and "modelSizeB" in weights.source
