"""Prometheus's own `promtool` (Debian package `prometheus`, installed by ./tasks.sh test): rule files are
checked and unit-tested by the same parser and engine Prometheus runs."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml


def promtool(*args: str, cwd: Path) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool not found: ./tasks.sh test installs it (apt package prometheus)"
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def write_rules(groups: list[dict[str, Any]], directory: Path, name: str = "rules.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def check_queries(queries: list[str], directory: Path) -> None:
    """Every query parses: each becomes a recording rule and `promtool check rules` parses the file."""
    rules = [{"record": f"query:{index}", "expr": query} for index, query in enumerate(queries)]
    path = write_rules([{"name": "queries", "rules": rules}], directory, "queries.yaml")
    promtool("check", "rules", path.name, cwd=directory)
