"""The Kubernetes version the platform deploys is one EKS runs in standard support (not billed at the extended
rate), with nodes, Karpenter and every chart behind it, checked against the recorded upstream facts
(components/upstream/aws.json, eks-ami.json, karpenter-compatibility.json, charts.json)."""

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from components import upstream, versions
from components.pricing import load_catalog
from infra.cost.model import Context, Usage, price_graph
from infra.offline import Graph
from stacks.loader import ConfigError, validate

# A pin must hold this long after the facts were checked, so a stale one fails the suite before it bills.
HORIZON_DAYS = 60
CHECKED = datetime.date.fromisoformat(upstream.facts("aws")["checked"])


def accepted_versions() -> list[str]:
    return [versions.KUBERNETES_VERSION, *versions.SUPPORTED_KUBERNETES_VERSIONS]


@pytest.mark.parametrize("version", accepted_versions())
def test_every_accepted_version_is_offered_and_in_standard_support_60_days_past_the_check(version: str) -> None:
    assert upstream.eks_version_problems(version, CHECKED, HORIZON_DAYS) == []


def test_each_stack_deploys_a_version_in_standard_support_60_days_past_the_check(graph: Graph) -> None:
    cluster = graph.one("eks:index:Cluster")
    assert upstream.eks_version_problems(cluster.inputs["version"], CHECKED, HORIZON_DAYS) == [], cluster.urn


def test_system_nodes_follow_the_control_plane_version(graph: Graph) -> None:
    # pulumi-aws eks.NodeGroup `version`: "Defaults to EKS Cluster Kubernetes version. The provider will only perform
    # drift detection if a configuration value is provided" (pulumi_aws/eks/node_group.py, 7.51.1).
    cluster = graph.one("eks:index:Cluster")
    for nodes in graph.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert nodes.inputs.get("version") == cluster.inputs["version"], nodes.urn


def test_a_version_leaving_standard_support_within_the_horizon_is_reported() -> None:
    # 1.34: AWS lists its end of standard support as 2026-12-02, two days after the facts' check date.
    (problem,) = upstream.eks_version_problems("1.34", datetime.date(2026, 11, 30), HORIZON_DAYS)
    assert "2026-12-02" in problem
    assert upstream.eks_version_problems("1.36", CHECKED) == [
        "Kubernetes 1.36: not recorded as offered by EKS (components/upstream/aws.json)"
    ]


@pytest.mark.parametrize("version", accepted_versions())
def test_karpenter_compatibility_matrix_covers_every_accepted_version(version: str) -> None:
    recorded = upstream.facts("karpenter-compatibility")
    assert recorded["version"] == versions.KARPENTER.version
    assert upstream.karpenter_supports(version, versions.KARPENTER.version), recorded["minimumKarpenter"]


def test_karpenter_compatibility_rejects_a_karpenter_too_old() -> None:
    # The v1.14 docs' matrix: Kubernetes 1.35 needs Karpenter >= 1.9.
    assert not upstream.karpenter_supports("1.35", "1.8.3")
    assert not upstream.karpenter_supports("1.99", "1.14.1")


@pytest.mark.parametrize("chart", sorted(upstream.facts("charts")["charts"]))
def test_no_chart_kube_version_constraint_excludes_an_accepted_version(chart: str) -> None:
    constraint = upstream.facts("charts")["charts"][chart]["kubeVersion"]
    for version in accepted_versions():
        assert upstream.kube_version_allows(constraint, version), f"{chart} kubeVersion {constraint!r} vs {version}"


def test_kube_version_constraints_read_as_helm_does() -> None:
    assert upstream.kube_version_allows(">=v1.23.0-0", "1.35")
    assert not upstream.kube_version_allows(">=1.36.0-0", "1.35")
    assert not upstream.kube_version_allows(">=1.25.0-0 <1.35.0-0", "1.35")  # not understood: read it


def test_a_version_past_standard_support_is_a_config_error_naming_the_key_and_allowed_values() -> None:
    values = {"cluster": {"publicAccessCidrs": ["198.51.100.0/24"], "kubernetesVersion": "1.34"}}
    with pytest.raises(ConfigError) as raised:
        validate("dev", values, "Pulumi.test.yaml")
    (line,) = str(raised.value).splitlines()
    assert "llm-platform:cluster.kubernetesVersion" in line and "'1.35'" in line, line


def _control_plane(tmp_path: Path, version: str, on: datetime.date) -> tuple[str, float, tuple[str, ...]]:
    prices = {"eks.cluster": 0.1, "eks.cluster.extended": 0.6, "logs.ingest.gb": 0.5}
    document = {"region": "xx-test-1", "prices": {
        key: {"price": value, "unit": "USD/hour", "date": "2026-11-30", "source": "test"}
        for key, value in prices.items()
    }}
    (tmp_path / "xx-test-1.json").write_text(json.dumps(document))
    (tmp_path / "instances.json").write_text(json.dumps({"types": {}}))
    cluster: dict[str, Any] = {"urn": "urn:pulumi:t::p::eks:index:Cluster::c", "type": "eks:index:Cluster",
                               "name": "c", "parent": None, "inputs": {"version": version}}
    usage = Usage(requests=0, gpu_requests=0, gpu_tokens=0, gpu_node_hours=0, gpu_node_launches=0,
                  hourly_requests=[], prompt_tokens=0, output_tokens=0)
    ctx = Context(graph={"resources": [cluster]}, catalog=load_catalog("xx-test-1", tmp_path), usage=usage,
                  model_gb=0, image_gb=0, huggingface=False, on=on)
    (line, _logs), _ = price_graph(ctx)
    return line.item, line.fixed, line.prices


def test_control_plane_bills_extended_support_after_the_standard_support_date(tmp_path: Path) -> None:
    # 730 h x $0.10 = $73.00 up to 1.34's end of standard support (2026-12-02); 730 h x $0.60 = $438.00 after it.
    assert _control_plane(tmp_path, "1.34", datetime.date(2026, 12, 2))[1:] == (pytest.approx(73.0), ("eks.cluster",))
    item, fixed, keys = _control_plane(tmp_path, "1.34", datetime.date(2026, 12, 3))
    assert (fixed, keys) == (pytest.approx(438.0), ("eks.cluster.extended",))
    assert "extended support" in item
    assert _control_plane(tmp_path, "1.35", datetime.date(2026, 12, 3))[1] == pytest.approx(73.0)
