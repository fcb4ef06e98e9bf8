"""Which bucket and registry table a command works on: the stack's Pulumi outputs when the stack is deployed and the
Pulumi CLI is at hand, else `--bucket` / `--table` (or their environment variables). A flag that disagrees with the
deployed stack's output is refused rather than silently winning over it."""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.models.errors import Refused

BUCKET_OUTPUT = "modelBucketName"  # stacks/platform.py exports these two
TABLE_OUTPUT = "modelRegistryTableName"
BUCKET_ENV = "LLM_PLATFORM_MODEL_BUCKET"
TABLE_ENV = "LLM_PLATFORM_MODEL_TABLE"
# The Pulumi CLI to ask for stack outputs; set it empty to never ask (a MinIO or moto endpoint, say).
PULUMI_ENV = "LLM_PLATFORM_PULUMI"
PULUMI_TIMEOUT_S = 60


@dataclass(frozen=True)
class Targets:
    bucket: str
    table: str
    origin: str  # where the names came from, for the user


def stack_outputs(stack: str, project_dir: Path) -> dict[str, Any] | None:
    """`pulumi stack output --json` of the stack, or None when there is no CLI or no such deployed stack."""
    pulumi = shutil.which(os.environ.get(PULUMI_ENV, "pulumi") or "")
    if not pulumi:
        return None
    result = subprocess.run(
        [pulumi, "stack", "output", "--json", "--non-interactive", "--stack", stack, "--cwd", str(project_dir)],
        capture_output=True, text=True, timeout=PULUMI_TIMEOUT_S, check=False,
    )
    if result.returncode != 0:
        return None
    outputs = json.loads(result.stdout or "{}")
    return outputs if isinstance(outputs, dict) else None


def _pick(what: str, flag: str | None, output: Any, option: str, env: str, stack: str, output_name: str) -> str:
    if isinstance(output, str) and output:
        if flag and flag != output:
            raise Refused(f"{option} {flag} differs from stack {stack}'s output {output_name} {output}; drop the flag")
        return output
    if flag:
        return flag
    raise Refused(f"no {what} for stack {stack}: deploy it (output {output_name}) or pass {option} or set {env}")


def resolve(stack: str, project_dir: Path, bucket: str | None, table: str | None) -> Targets:
    outputs = stack_outputs(stack, project_dir) or {}
    return Targets(
        bucket=_pick("model bucket", bucket, outputs.get(BUCKET_OUTPUT), "--bucket", BUCKET_ENV, stack, BUCKET_OUTPUT),
        table=_pick("registry table", table, outputs.get(TABLE_OUTPUT), "--table", TABLE_ENV, stack, TABLE_OUTPUT),
        origin=f"pulumi stack {stack} outputs" if outputs else "flags/environment",
    )
