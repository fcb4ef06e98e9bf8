"""Bucket and table names: a deployed stack's outputs (through the Pulumi CLI) first, else flags/environment."""

import json
import stat
from pathlib import Path

import pytest

from infra.models import targets
from infra.models.errors import Refused

OUTPUTS = {
    "modelBucketName": "llm-platform-prod-models-123456789012",
    "modelRegistryTableName": "model-store-registry-1",
}


def fake_pulumi(directory: Path, outputs: dict[str, str] | None) -> Path:
    """A `pulumi` that records its arguments and prints `outputs` as `stack output --json` does (or fails)."""
    script = directory / "pulumi"
    answer = "echo 'error: no stack named prod' >&2; exit 255"
    if outputs is not None:
        answer = f"echo '{json.dumps(outputs)}'"
    script.write_text(f'#!/bin/sh\necho "$@" > "{directory}/args"\n{answer}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_deployed_stack_outputs_name_bucket_and_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PLATFORM_PULUMI", str(fake_pulumi(tmp_path, OUTPUTS)))
    chosen = targets.resolve("prod", tmp_path, None, None)
    assert (chosen.bucket, chosen.table) == (OUTPUTS["modelBucketName"], OUTPUTS["modelRegistryTableName"])
    args = (tmp_path / "args").read_text().split()
    assert args[:3] == ["stack", "output", "--json"] and args[args.index("--stack") + 1] == "prod"
    assert args[args.index("--cwd") + 1] == str(tmp_path) and "--non-interactive" in args


def test_a_flag_that_contradicts_the_outputs_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PLATFORM_PULUMI", str(fake_pulumi(tmp_path, OUTPUTS)))
    with pytest.raises(Refused, match="--bucket other-bucket differs from stack prod's output modelBucketName"):
        targets.resolve("prod", tmp_path, "other-bucket", None)


def test_without_a_deployed_stack_flags_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PLATFORM_PULUMI", str(fake_pulumi(tmp_path, None)))
    chosen = targets.resolve("prod", tmp_path, "my-bucket", "my-table")
    assert (chosen.bucket, chosen.table, chosen.origin) == ("my-bucket", "my-table", "flags/environment")
    with pytest.raises(Refused, match="no model bucket for stack prod"):
        targets.resolve("prod", tmp_path, None, "my-table")
