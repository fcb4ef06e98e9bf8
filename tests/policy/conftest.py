"""Policy tests: rules fed the way the engine feeds them, and the pack process started once per session."""

import copy
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from infra.policy import running_pack

PACK_DIR = Path(__file__).resolve().parents[2] / "policies"
sys.path.insert(0, str(PACK_DIR))

from llm_policy.pack import POLICIES  # noqa: E402

BY_NAME = {policy.name: policy for policy in POLICIES}


def wire(value: Any) -> Any:
    """A value as it reaches the pack: through a protobuf Struct, where every number is a float."""
    return json.loads(json.dumps(value), parse_int=float)


def _options(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def resource_violations(
    rule: str, resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any] | None = None,
    name: str = "subject",
) -> list[str]:
    """What one resource rule reports for these props, wrapped in the unknown-checking proxy the real engine
    uses (pulumi-policy #445)."""
    policy = BY_NAME[rule]
    assert isinstance(policy, ResourceValidationPolicy)
    args = ResourceValidationArgs(
        resource_type, unknown_checking_proxy(wire(copy.deepcopy(dict(props)))),
        f"urn:pulumi:test::p::{resource_type}::{name}", name, _options(), None, config,
    )
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def stack_resources(graph: list[Mapping[str, Any]]) -> list[PolicyResource]:
    """Graph entries (the `preview --json` format) as the SDK's AnalyzeStack builds them: parents and
    dependencies resolved to resource objects, missing keys empty."""
    built = {
        entry["urn"]: PolicyResource(
            entry["type"], unknown_checking_proxy(wire(entry.get("inputs", {}))), entry["urn"], entry.get("name", ""),
            _options(bool((entry.get("options") or {}).get("protect"))), None, None, [], {},
        )
        for entry in graph
    }
    for entry in graph:
        resource = built[entry["urn"]]
        resource.parent = built.get(entry.get("parent") or "")
        resource.dependencies = [built[u] for u in entry.get("dependencies", []) if u in built]
        for key, urns in (entry.get("propertyDependencies") or {}).items():
            resource.property_dependencies[key] = [built[u] for u in urns if u in built]
    return list(built.values())


def stack_violations(
    rule: str, graph: list[Mapping[str, Any]], config: Mapping[str, Any] | None = None
) -> list[tuple[str, str | None]]:
    policy = BY_NAME[rule]
    assert isinstance(policy, StackValidationPolicy)
    found: list[tuple[str, str | None]] = []
    policy.validate(StackValidationArgs(stack_resources(graph), config), lambda m, urn=None: found.append((m, urn)))
    return found


def entry(kind: str, name: str, inputs: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """One resource of a synthetic graph, URN spelled as the engine does."""
    return {"urn": f"urn:pulumi:test::llm-platform::{kind}::{name}", "type": kind, "name": name,
            "inputs": dict(inputs or {}), **extra}


@pytest.fixture(scope="session")
def pack() -> Iterator[Any]:
    """The pack as its own process, started once: an analyzer stub, as the engine holds it."""
    with running_pack(PACK_DIR) as stub:
        yield stub
