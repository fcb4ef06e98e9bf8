"""Prometheus's own `promtool` and Alertmanager's `amtool` (Debian packages `prometheus` and
`prometheus-alertmanager`, installed by ./tasks.sh test): rule files and Alertmanager configs are checked by the
same parsers Prometheus and Alertmanager run."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml


def promtool(*args: str, cwd: Path) -> str:
    return run("promtool", *args, cwd=cwd)


def amtool(*args: str, cwd: Path) -> str:
    return run("amtool", *args, cwd=cwd)


def run(tool: str, *args: str, cwd: Path) -> str:
    binary = shutil.which(tool)
    assert binary, f"{tool} not found: ./tasks.sh test installs it (apt packages prometheus, prometheus-alertmanager)"
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{tool} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
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
