"""The offline runner end to end: the pack as its own process, spoken to over the analyzer gRPC protocol, on both
shipped stacks and on a deliberately broken prod graph; and `llm-platform policy` as a user runs it."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import empty_pb2

from infra.offline import Graph
from infra.policy import PolicyInputError, Report, evaluate, load_config, load_graph, pack_config, run_policy

from .conftest import BY_NAME, PACK_DIR

PROJECT_DIR = PACK_DIR.parent
CLI = [sys.executable, "-m", "infra.cli", "policy"]


def policy_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "250"})


def stack_config(stack: str) -> dict[str, Any]:
    return load_config(PACK_DIR / "config" / f"{stack}.json")


def test_analyzer_info_describes_every_policy(pack: Any) -> None:
    info = pack.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "llm-platform"
    assert {policy.name for policy in info.policies} == set(BY_NAME)
    assert all(policy.remediation_steps and policy.severity for policy in info.policies)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_both_stacks_over_grpc(pack: Any, stack: str, dev_graph: Graph, prod_graph: Graph) -> None:
    built = dev_graph if stack == "dev" else prod_graph
    graph = built.to_json()
    report = evaluate(pack, graph, pack_config(graph, stack_config(stack), built.config))
    urns = {resource["urn"] for resource in graph["resources"]}
    assert (report.stack, report.resources, report.policies) == (stack, len(urns), len(BY_NAME))
    for violation in report.violations:
        assert violation.policy in BY_NAME and violation.level in ("mandatory", "advisory")
        assert violation.urn in urns or violation.resource == "(stack)"
        # A rule that cannot read its input reports "can't run policy": never on an offline graph.
        assert "can't run policy" not in violation.message
    # Both shipped stacks pass every mandatory rule (where one broke a rule, the stack was fixed, not the rule).
    assert [(v.policy, v.resource) for v in report.violations if v.level == "mandatory"] == []


def test_the_stacks_budget_and_cost_projection_reach_the_pack(pack: Any, prod_graph: Graph) -> None:
    """The budget comes from the stack file and the projection from the cost model, not from a copy in the
    pack's config: a budget below what prod costs before any traffic fails the cost rule."""
    graph = prod_graph.to_json()
    config = pack_config(graph, stack_config("prod"), prod_graph.config)
    figures = config["cost-within-budget"]
    assert figures["monthlyBudgetUsd"] == 4000  # Pulumi.prod.yaml: llm-platform:monthlyBudgetUsd
    assert 0 < figures["projectedMonthlyUsd"] < figures["monthlyBudgetUsd"]
    assert "cost-within-budget" not in pairs_of(evaluate(pack, graph, config))

    tight = prod_graph.config.model_copy(update={"monthly_budget_usd": figures["projectedMonthlyUsd"] / 2})
    report = evaluate(pack, graph, pack_config(graph, stack_config("prod"), tight))
    assert "cost-within-budget" in pairs_of(report), report.violations


def pairs_of(report: Report) -> set[str]:
    return {violation.policy for violation in report.violations}


def with_dependency(graph: dict[str, Any], name: str, on: str, kind: str) -> None:
    urn = by_name(graph, on, kind)["urn"]
    resource = by_name(graph, name)
    resource["dependencies"] = [urn]
    resource.setdefault("options", {})["dependsOn"] = [urn]


def by_name(graph: dict[str, Any], name: str, kind: str | None = None) -> dict[str, Any]:
    (found,) = [r for r in graph["resources"] if r["name"] == name and (kind is None or kind in r["type"])]
    return found


def break_prod(graph: dict[str, Any]) -> dict[str, Any]:
    """The insecure and fragile mutations the pack exists to stop."""
    broken = copy.deepcopy(graph)
    by_name(broken, "model-store-public-access")["inputs"].update(blockPublicAcls=False, blockPublicPolicy=False)
    by_name(broken, "cache-redis", "replicationGroup")["inputs"]["transitEncryptionEnabled"] = False
    vllm = by_name(broken, "vllm-deployment")["inputs"]["spec"]["template"]["spec"]["containers"][0]
    vllm["image"] = "vllm/vllm-openai:latest"
    del by_name(broken, "node-pools-gpu-nodepool")["inputs"]["spec"]["template"]["spec"]["taints"]
    by_name(broken, "model-store-reader", "rolePolicy")["inputs"]["policy"] = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    by_name(broken, "network-endpoints")["inputs"]["ingress"].append(
        {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]})
    gateway = by_name(broken, "gateway-deployment")["inputs"]["spec"]["template"]["spec"]["containers"][0]
    del gateway["readinessProbe"], gateway["livenessProbe"]
    by_name(broken, "gateway-ingress")["dependencies"] = []
    by_name(broken, "gateway-ingress")["options"] = {}
    return broken


# (rule, resource named in the output) for each mutation of break_prod.
EXPECTED = [
    ("s3-public-access-blocked", "model-store-public-access"),
    ("redis-encryption-in-transit", "cache-redis"),
    ("k8s-image-pinned", "vllm-deployment"),
    ("karpenter-gpu-taint", "node-pools-gpu-nodepool"),
    ("iam-no-star-star", "model-store-reader"),
    ("iam-parliament", "model-store-reader"),
    ("sg-no-world-ingress", "network-endpoints"),
    ("k8s-probes", "gateway-deployment"),
    ("order-ingress-after-lb-controller", "gateway-ingress"),
]


def pairs(report: Report) -> set[tuple[str, str]]:
    return {(violation.policy, violation.resource) for violation in report.violations}


def test_shipped_prod_has_none_of_the_broken_findings(pack: Any, prod_graph: Graph) -> None:
    """The baseline the broken graph is compared with; protect, dependencies and the other options and providers
    of the graph reach the pack over gRPC."""
    report = evaluate(pack, prod_graph.to_json(), stack_config("prod"))
    assert pairs(report).isdisjoint(EXPECTED)
    assert not any(v.policy == "protect-stateful-resources" for v in report.violations)


def test_policy_cli_flags_a_broken_prod_graph(tmp_path: Path, prod_graph: Graph) -> None:
    graph_file = tmp_path / "broken.json"
    graph_file.write_text(json.dumps(break_prod(prod_graph.to_json())))
    result = policy_cli("--graph", str(graph_file))
    assert result.returncode == 1, result.stderr
    rows = result.stdout.splitlines()
    for rule, resource in EXPECTED:
        assert any(re.search(rf"\b{rule}\b.*\b{resource}\b", row) for row in rows), (rule, resource)
    assert re.search(r"policy pack llm-platform 0\.1\.0: \d+ violation\(s\), \d+ mandatory", result.stdout)


def test_policy_cli_json_on_a_stack(dev_graph: Graph) -> None:
    result = policy_cli("--stack", "dev", "--format", "json")
    report = json.loads(result.stdout)
    assert result.returncode == (1 if report["summary"]["mandatory"] else 0), result.stderr
    assert report["stack"] == "dev" and report["resources"] == len(dev_graph.resources)
    assert set(report["summary"]) == {"violations", "mandatory", "advisory"}
    for violation in report["violations"]:
        assert set(violation) == {"policy", "resource", "urn", "message", "level", "severity"}


def test_missing_graph_exits_2_with_one_line(tmp_path: Path) -> None:
    result = policy_cli("--graph", str(tmp_path / "graph.json"))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "graph.json: no such graph file" in line and "Traceback" not in result.stderr


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "not a JSON graph"),
    ('{"resources": [{"name": "x"}]}', "not a resource graph"),
    ('["urn"]', "not a resource graph"),
])
def test_malformed_graph_is_one_line_input_error(tmp_path: Path, content: str, expected: str) -> None:
    """What the CLI prints (and exits 2 on, as for the missing file above)."""
    graph_file = tmp_path / "graph.json"
    graph_file.write_text(content)
    with pytest.raises(PolicyInputError) as error:
        load_graph(graph_file)
    assert expected in str(error.value) and "\n" not in str(error.value)


def write_pack(folder: Path, body: str) -> Path:
    (folder / "PulumiPolicy.yaml").write_text("runtime: python\nversion: 0.0.9\n")
    (folder / "__main__.py").write_text(
        "from pulumi_policy import PolicyPack, ResourceValidationPolicy\n" + body
    )
    return folder


@pytest.mark.parametrize(("body", "expected"), [
    ("raise ImportError('no module named llm_policy')\n", "the policy pack did not start: ImportError"),
    ("def broken(args, report):\n    raise KeyError('spec')\n"
     "PolicyPack('p', [ResourceValidationPolicy('broken', 'd', broken)])\n", "the policy pack failed:"),
])
def test_a_pack_that_fails_is_one_line(tmp_path: Path, body: str, expected: str) -> None:
    """What `llm-platform policy` prints (exit 2) and `preview` reports instead of a summary."""
    pack_dir = write_pack(tmp_path, body)
    graph = {"stack": "dev", "resources": [{"urn": "urn:pulumi:dev::p::t:m:R::r", "type": "t:m:R", "name": "r"}]}
    with pytest.raises(RuntimeError) as error:
        run_policy(graph, {}, pack_dir)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)
