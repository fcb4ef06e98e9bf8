"""Example values in the shipped stack files: the offline preview lists them, a real deploy refuses them."""

import contextvars
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from infra.program import run
from stacks.defaults import deep_merge
from stacks.loader import ConfigError, as_engine_config, read_stack_file, stack_file, validate
from stacks.placeholders import find_placeholders, placeholder_reason

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Each shipped stack's example values, by key: what the README tells a user to fill in.
SHIPPED = {
    "dev": {"cluster.publicAccessCidrs[0]": "203.0.113.0/24"},
    "prod": {
        "cluster.publicAccessCidrs[0]": "198.51.100.0/24",
        "cluster.adminPrincipalArns[0]": "arn:aws:iam::123456789012:role/platform-admins",
        "edge.domain": "llm.example.com",
        "edge.hostedZoneId": "Z0EXAMPLE00ZONE",
        "addons.karpenter.gpuPool.imageSnapshotId": "snap-1234567890abcdef0",
    },
}
# What a user would put there instead.
FILLED = {
    "cluster": {"publicAccessCidrs": ["81.2.69.0/24"], "adminPrincipalArns": ["arn:aws:iam::444455556666:role/ops"]},
    "edge": {"domain": "llm.acme-corp.io", "hostedZoneId": "Z05821223M3LMP9Q2ZJ1Y"},
}
# Only prod's GPU pool (Bottlerocket) takes an image snapshot.
FILLED_SNAPSHOT = {"addons": {"karpenter": {"gpuPool": {"imageSnapshotId": "snap-0a1b2c3d4e5f60718"}}}}


def test_a_named_image_this_project_does_not_publish_is_one() -> None:
    """The stack builds its own images; a name under the project's would-be registry is a leftover example."""
    named = {"serving": {"gateway": {"image": "ghcr.io/llm-platform/gateway:0.1.0"}}}
    values = deep_merge(shipped_values("dev"), named)
    (found,) = [p for p in find_placeholders(validate("dev", values, "x")) if p.key == "serving.gateway.image"]
    assert "unset it so the stack builds serving/Dockerfile" in found.message("x")


def shipped_values(stack: str) -> dict:
    return read_stack_file(stack_file(PROJECT_DIR, stack))


@pytest.mark.parametrize("stack", SHIPPED)
def test_every_example_value_of_the_shipped_stacks_is_found(stack: str) -> None:
    config = validate(stack, shipped_values(stack), "x")
    assert {p.key: p.value for p in find_placeholders(config)} == SHIPPED[stack]


@pytest.mark.parametrize(
    ("value", "flagged"),
    [
        ("192.0.2.0/24", True), ("198.51.100.128/25", True), ("203.0.113.7/32", True), ("10.0.0.0/8", False),
        ("81.2.69.0/24", False), ("arn:aws:iam::123456789012:role/x", True),
        ("arn:aws:iam::444455556666:role/x", False),
        ("example.com", True), ("api.example.org", True), ("llm.internal.test", True), ("myexample.com", False),
        ("ghcr.io/llm-platform/gateway:0.1.0", True), ("ghcr.io/acme/gateway:0.1.0", False),
        ("Z0EXAMPLE00ZONE", True), ("Qwen/Qwen2.5-7B-Instruct", False),
        ("snap-1234567890abcdef0", True), ("snap-0a1b2c3d4e5f60718", False),
    ],
)
def test_example_values_by_rule(value: str, flagged: bool) -> None:
    assert (placeholder_reason(value) is not None) is flagged


def run_as_the_engine(stack: str, values: dict) -> None:
    """The program as `pulumi preview`/`up` runs it (infra/__main__.py): config comes from the engine."""

    def program() -> None:
        pulumi.runtime.set_all_config(as_engine_config(values))
        run("llm-platform", stack)

    contextvars.Context().run(program)


@pytest.mark.parametrize("stack", SHIPPED)
def test_a_real_deploy_refuses_each_example_value_saying_what_belongs(stack: str) -> None:
    with pytest.raises(ConfigError) as raised:
        run_as_the_engine(stack, shipped_values(stack))
    lines = str(raised.value).splitlines()
    assert len(lines) == len(SHIPPED[stack])
    for line, (key, value) in zip(lines, SHIPPED[stack].items(), strict=True):
        assert line.startswith(f"stack {stack}: llm-platform:{key}: {value} is a placeholder ("), line
        assert "; set it to " in line


@pytest.mark.parametrize("stack", SHIPPED)
def test_filled_in_stacks_have_no_placeholders(stack: str) -> None:
    values = deep_merge(shipped_values(stack), deep_merge(FILLED, FILLED_SNAPSHOT) if stack == "prod" else FILLED)
    assert find_placeholders(validate(stack, values, "x")) == []


def test_offline_preview_lists_them_as_warnings_and_succeeds() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "preview", "--stack", "prod"], cwd=PROJECT_DIR, capture_output=True,
        text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert [line.split(": ")[2] for line in warnings] == [f"llm-platform:{key}" for key in SHIPPED["prod"]]
    assert all(line.startswith("warning: Pulumi.prod.yaml: ") for line in warnings)
