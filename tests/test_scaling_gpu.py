"""Scaling on GPU utilisation beside the queue: prod's ScaledObject carries a dcgm-exporter trigger, and the
formula asks for whichever of the two needs more replicas (figures below are worked by hand)."""

import math
import re
from pathlib import Path
from typing import Any

import pytest
from exported_metrics import ALL_EXPORTED, metric_names
from k8s_schemas import validate_manifest
from promtool import check_queries

from components.vllm import ScalingConfig, scaling_formula
from infra.offline import Graph
from infra.render import kubernetes_objects


def scaled_object(graph: Graph) -> dict[str, Any]:
    (manifest,) = [
        m for m in kubernetes_objects(graph) if m["kind"] == "ScaledObject" and m["metadata"]["name"] == "vllm"
    ]
    return manifest


def desired_replicas(formula: str, target: float, **values: float) -> int:
    """KEDA evaluates the formula (expr-lang; `c ? a : b` as in KEDA's scalingModifiers docs) and the HPA
    asks for ceil(value / target) replicas with metricType AverageValue."""
    ternary = re.fullmatch(r"(.+) > (.+) \? (.+) : (.+)", formula)
    python = f"({ternary[3]} if {ternary[1]} > {ternary[2]} else {ternary[4]})" if ternary else formula
    return math.ceil(eval(python, {}, values) / target)


def test_prod_scales_on_gpu_utilisation_and_the_queue(prod_graph: Graph, tmp_path: Path) -> None:
    manifest = scaled_object(prod_graph)
    assert validate_manifest(manifest) == []  # tests/schemas/keda.sh_scaledobjects.yaml
    triggers = {t["name"]: t for t in manifest["spec"]["triggers"]}
    assert set(triggers) == {"running", "waiting", "pending", "gpu"}
    query = triggers["gpu"]["metadata"]["query"]
    assert metric_names(query) == {"DCGM_FI_DEV_GPU_UTIL"} <= ALL_EXPORTED
    assert 'namespace="llm-serving"' in query and 'pod=~"vllm-.+"' in query
    check_queries([t["metadata"]["query"] for t in triggers.values()], tmp_path)


def test_dev_scales_on_the_queue_only(dev_graph: Graph) -> None:
    spec = scaled_object(dev_graph)["spec"]
    assert "gpu" not in {t["name"] for t in spec["triggers"]}
    assert "?" not in spec["advanced"]["scalingModifiers"]["formula"]


@pytest.mark.parametrize(
    ("values", "replicas"),
    [
        # Three pods at 95 % GPU with 2 running requests: the queue wants 1, the GPU ceil(285 / 85) = 4.
        ({"running": 2, "waiting": 0, "pending": 0, "gpu": 285}, 4),
        # A queue of 5 on top of 12 running: (12 + 50) / 6 -> 11, the GPUs (2 pods at 60 %) ask for 2.
        ({"running": 12, "waiting": 5, "pending": 0, "gpu": 120}, 11),
        # Idle: both zero, nothing needed (KEDA's minReplicaCount still applies).
        ({"running": 0, "waiting": 0, "pending": 0, "gpu": 0}, 0),
    ],
)
def test_the_larger_demand_wins(values: dict[str, float], replicas: int) -> None:
    scaling = ScalingConfig(target_per_pod=6, waiting_weight=10, gpu_utilization_percent=85)
    assert desired_replicas(scaling_formula(scaling), 6, **values) == replicas


def test_formula_keeps_the_queue_only_shape_without_a_gpu_target() -> None:
    scaling = ScalingConfig(target_per_pod=6, waiting_weight=10)
    assert desired_replicas(scaling_formula(scaling), 6, running=2, waiting=1, pending=0, gpu=500) == 2
