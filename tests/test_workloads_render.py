"""Rendered Kubernetes objects: every one valid for the pinned schemas, and `preview --render-k8s` writes them."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k8s_schemas import validate_manifest

from infra.offline import Graph
from infra.render import kubernetes_objects, write_manifests

PROJECT_DIR = Path(__file__).resolve().parent.parent
SERVING_KINDS = {
    "Namespace", "Deployment", "Service", "PodDisruptionBudget", "ServiceAccount", "ScaledObject",
    "HorizontalPodAutoscaler", "Ingress", "Secret",
}


def test_every_rendered_object_validates(graph: Graph) -> None:
    objects = kubernetes_objects(graph)
    assert {manifest["kind"] for manifest in objects} >= SERVING_KINDS
    problems = [problem for manifest in objects for problem in validate_manifest(manifest)]
    assert problems == []


def test_validation_rejects_keda_behaviour_under_spec(graph: Graph) -> None:
    """Seed 000's mistake must not pass the schema check this suite relies on."""
    (scaled,) = [m for m in kubernetes_objects(graph)
                 if m["kind"] == "ScaledObject" and m["metadata"]["name"] == "vllm"]
    broken = {**scaled, "spec": {**scaled["spec"], "behavior": {"scaleDown": {}}}}
    assert any("behavior" in problem for problem in validate_manifest(broken))


def test_write_manifests_one_parseable_file_per_object(dev_graph: Graph, tmp_path: Path) -> None:
    objects = kubernetes_objects(dev_graph)
    paths = write_manifests(objects, tmp_path / "k8s")
    assert len(paths) == len(objects) == len(list((tmp_path / "k8s").iterdir()))
    assert (tmp_path / "k8s" / "llm-serving-scaledobject-vllm.yaml") in paths
    assert (tmp_path / "k8s" / "cluster-namespace-llm-serving.yaml") in paths
    reread = [yaml.safe_load(path.read_text()) for path in paths]
    assert reread == objects
    assert isinstance(reread[0]["metadata"], dict)


@pytest.mark.parametrize("stack", ["prod"])
def test_preview_render_k8s_writes_the_objects(stack: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "preview", "-s", stack, "--render-k8s", str(tmp_path)],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.glob("*.yaml"))
    assert f"{len(files)} Kubernetes objects written" in result.stdout
    deployment = yaml.safe_load((tmp_path / "llm-serving-deployment-vllm.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 80
    assert all(validate_manifest(yaml.safe_load(path.read_text())) == [] for path in files)


def test_every_serving_deployment_has_a_disruption_budget(graph: Graph) -> None:
    """A node drain must never take every pod of a serving Deployment at once (the apps' ones included)."""
    objects = kubernetes_objects(graph)
    budgets = [m for m in objects if m["kind"] == "PodDisruptionBudget"]
    serving = [m for m in objects if m["kind"] == "Deployment" and m["metadata"].get("namespace") == "llm-serving"]
    assert serving
    for deployment in serving:
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            budget for budget in budgets
            if budget["metadata"].get("namespace") == deployment["metadata"]["namespace"]
            and budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        ]
        assert covering, f"{graph.stack}: Deployment {deployment['metadata']['name']} has no PodDisruptionBudget"
