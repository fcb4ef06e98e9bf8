"""`llm-platform cost` and `simulate` as a user runs them: exit codes, one-line errors naming the key or file,
the JSON they print and the plot they write."""

import json
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "infra.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "MPLBACKEND": "Agg"},
    )


def test_an_unknown_set_key_exits_2_naming_it() -> None:
    result = run("cost", "--stack", "dev", "--set", "serving.vllm.maxModeLen=2048")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "llm-platform:serving.vllm.maxModeLen: unknown key" in line and "maxModelLen" in line


def test_a_bad_value_through_set_exits_2_naming_the_key() -> None:
    result = run("simulate", "--stack", "dev", "--hours", "1", "--set", "traffic.cacheableShare=2")
    assert result.returncode == 2
    assert "llm-platform:traffic.cacheableShare" in result.stderr


def test_a_bad_profile_exits_2_naming_the_file_and_key(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("weekday: [idle, low, peak]\n")
    result = run("simulate", "--stack", "dev", "--hours", "1", "--profile", str(profile))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert str(profile) in line and "llm-platform:traffic.weekday" in line and "24" in line


def test_a_missing_profile_exits_2() -> None:
    result = run("simulate", "--stack", "dev", "--profile", "no-such-profile.yaml")
    assert result.returncode == 2
    assert "--profile no-such-profile.yaml: cannot read it" in result.stderr


def test_an_unknown_format_exits_2() -> None:
    result = run("cost", "--stack", "dev", "--format", "xml")
    assert result.returncode == 2
    assert "allowed: table, json, markdown" in result.stderr


def test_simulate_prints_a_summary_and_writes_a_png(tmp_path: Path) -> None:
    plot = tmp_path / "week.png"
    result = run("simulate", "--stack", "dev", "--hours", "12", "--json", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert summary["simulatedHours"] == 12
    answered = summary["cacheHits"] + summary["served"] + summary["refused"] + summary["timedOut"]
    assert answered <= summary["requests"] <= answered + 200  # the rest is still in flight when the run ends
    # The dev profile's first 12 hours: idle until 07:00, then low, medium, high.
    assert list(summary["levels"]) == ["idle", "low", "medium", "high", "peak"]
    assert summary["levels"]["idle"]["hours"] == 7 and summary["levels"]["peak"]["hours"] == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cost_json_adds_up_and_prices_every_type() -> None:
    result = run("cost", "--stack", "dev", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["dev"]
    assert report["unpriced"] == []
    assert abs(report["monthlyUsd"] - report["fixedUsd"] - report["usageUsd"]) < 0.02
    assert abs(report["headroomUsd"] - (report["budgetUsd"] - report["monthlyUsd"])) < 0.02
    components = sum(c["fixedUsd"] + c["usageUsd"] for c in report["components"].values())
    assert abs(components - report["monthlyUsd"]) < 0.1


def test_preview_prints_the_month_before_traffic() -> None:
    result = run("preview", "--stack", "dev")
    assert result.returncode == 0, result.stderr
    assert "Monthly cost before traffic: " in result.stdout
    assert "llm-platform cost --stack dev" in result.stdout


def test_set_reads_values_as_yaml_and_rejects_a_missing_equals() -> None:
    import pytest

    from infra.cost.estimate import parse_set
    from stacks.loader import ConfigError

    assert parse_set("serving.vllm.maxModelLen=2048") == {"serving": {"vllm": {"maxModelLen": 2048}}}
    assert parse_set("traffic.weekend=[idle]") == {"traffic": {"weekend": ["idle"]}}
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        parse_set("serving.vllm.maxModelLen")
