"""The vLLM image through the stack's ECR pull-through cache (addons.imageCache): the rule as AWS documents a Docker
Hub rule (components/upstream/ecr-pull-through.json), the node role's import permissions, and vLLM and the warm
placeholder pulling the cached copy."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from components import upstream
from infra.offline import Graph, build_graph
from infra.policy import default_config_file, load_config, pack_config, run_policy
from stacks.defaults import deep_merge
from stacks.loader import ConfigError, as_engine_config, read_stack_file, stack_file, validate

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET = "arn:aws:secretsmanager:us-west-2:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
CACHED = re.compile(r"^\d{12}\.dkr\.ecr\.us-west-2\.amazonaws\.com/docker-hub/vllm/vllm-openai:v\d+\.\d+\.\d+$")


def _values(change: dict[str, Any]) -> dict[str, Any]:
    return deep_merge(read_stack_file(stack_file(PROJECT_DIR, "prod")), change)


@pytest.fixture(scope="module")
def cached_graph() -> Graph:
    values = _values({"addons": {"imageCache": {"dockerHubCredentialArn": SECRET}}})
    return build_graph(validate("prod", values, "test"), "prod", as_engine_config(values))


def test_rule_caches_docker_hub_with_the_credential(cached_graph: Graph) -> None:
    facts = upstream.facts("ecr-pull-through")
    rule = cached_graph.one("aws:ecr/pullThroughCacheRule:PullThroughCacheRule")
    assert rule.inputs["upstreamRegistryUrl"] == facts["upstreamRegistryUrls"]["docker-hub"], rule.urn
    assert rule.inputs["credentialArn"] == SECRET, rule.urn
    assert re.fullmatch(facts["credentialArnPattern"], rule.inputs["credentialArn"])
    low, high = facts["ecrRepositoryPrefixLength"]
    assert low <= len(rule.inputs["ecrRepositoryPrefix"]) <= high, rule.urn


def test_nodes_may_import_into_the_cache_only(cached_graph: Graph) -> None:
    facts = upstream.facts("ecr-pull-through")
    policy = cached_graph.one("aws:iam/rolePolicy:RolePolicy", "image-cache-node-import")
    (statement,) = json.loads(policy.inputs["policy"])["Statement"]
    assert sorted(statement["Action"]) == sorted(facts["pullerActions"]), policy.urn
    assert re.fullmatch(r"arn:aws:ecr:us-west-2:\d{12}:repository/docker-hub/\*", statement["Resource"]), policy.urn


def test_vllm_and_the_placeholder_pull_the_cached_image(cached_graph: Graph) -> None:
    deployment = "kubernetes:apps/v1:Deployment"
    (vllm,) = cached_graph.one(deployment, "vllm-deployment").inputs["spec"]["template"]["spec"]["containers"]
    placeholder = cached_graph.one(deployment, "warm-capacity-deployment").inputs["spec"]["template"]["spec"]
    assert CACHED.match(vllm["image"]), vllm["image"]
    assert placeholder["initContainers"][0]["image"] == vllm["image"]


def test_without_a_credential_there_is_no_rule(prod_graph: Graph) -> None:
    assert not prod_graph.of_type("aws:ecr/pullThroughCacheRule:PullThroughCacheRule")


def test_a_secret_outside_the_required_prefix_is_refused() -> None:
    wrong = "arn:aws:secretsmanager:us-west-2:123456789012:secret:dockerhub-AbCdEf"
    with pytest.raises(ConfigError, match=re.escape("llm-platform:addons.imageCache.dockerHubCredentialArn")):
        validate("prod", _values({"addons": {"imageCache": {"dockerHubCredentialArn": wrong}}}), "Pulumi.prod.yaml")


def test_prod_with_the_cache_passes_every_mandatory_policy(cached_graph: Graph) -> None:
    """The cached vLLM image is still vllm/vllm-openai to the policy pack (it runs as root by design)."""
    graph = cached_graph.to_json()
    report = run_policy(graph, pack_config(graph, load_config(default_config_file("prod")), cached_graph.config))
    assert [f"{v.policy}: {v.message}" for v in report.mandatory] == []
