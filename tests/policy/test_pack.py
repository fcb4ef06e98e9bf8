"""The pack as a whole: enough rules, each fully described, each tested, and config files that fit the schemas."""

import json
from pathlib import Path

import pytest
from pulumi_policy import EnforcementLevel, Severity

from .conftest import BY_NAME, PACK_DIR, POLICIES

TESTS = Path(__file__).resolve().parent


def test_at_least_forty_rules_each_described() -> None:
    assert len(POLICIES) >= 40
    for policy in POLICIES:
        assert policy.description and policy.remediation_steps, policy.name
        assert isinstance(policy.severity, Severity), policy.name
        assert policy.enforcement_level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY), policy.name


def test_every_rule_has_a_test() -> None:
    tested = "".join(path.read_text() for path in TESTS.glob("test_*_rules.py"))
    untested = [name for name in BY_NAME if f'"{name}"' not in tested]
    assert untested == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_config_names_real_policies_and_properties(stack: str) -> None:
    config = json.loads((PACK_DIR / "config" / f"{stack}.json").read_text())
    for name, values in config.items():
        schema = BY_NAME[name].config_schema
        assert schema is not None, name
        assert set(values) <= set(schema.properties) | {"enforcementLevel"}, name


def test_pack_is_self_contained() -> None:
    """The engine installs only requirements.txt into the pack's virtualenv: no project module is imported."""
    sources = "".join(path.read_text() for path in (PACK_DIR / "llm_policy").glob("*.py"))
    for project_package in ("components", "stacks", "infra", "serving"):
        assert f"from {project_package}" not in sources and f"import {project_package}" not in sources
    requirements = (PACK_DIR / "requirements.txt").read_text()
    assert "pulumi-policy==" in requirements and "parliament==" in requirements


def test_readme_lists_every_rule_with_its_level_and_severity() -> None:
    readme = (PACK_DIR / "README.md").read_text()
    for policy in POLICIES:
        level = policy.enforcement_level.value if policy.enforcement_level else ""
        severity = policy.severity.value if policy.severity else ""
        assert f"| `{policy.name}` | " in readme and f" | {level} | {severity} | " in readme.split(
            f"| `{policy.name}` | ", 1)[1].split("\n", 1)[0], policy.name
