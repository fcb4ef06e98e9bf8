"""`models promote` / `rollback` / `retire`: the registry rows, and exactly the two keys of `serving.vllm` in the right
stack file with every other line kept; racing promotes leave one winner."""

import difflib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from infra.models import release
from infra.models.cli import app
from infra.models.errors import Failed
from infra.models.registry import Registry

from .conftest import BUCKET, Aws, cli_args, local_files, make_model, refusal

runner = CliRunner()


@pytest.fixture
def versions(aws: Aws, tmp_path: Path) -> Aws:
    """qwen-test 1.0.0 and 1.1.0 published (staged)."""
    for seed, version in enumerate(("1.0.0", "1.1.0")):
        directory = make_model(tmp_path / version, seed=seed)
        release.publish(aws.backend(), local_files(directory), "qwen-test", version, "dev", ("local", None))
    return aws


def invoke(project: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, *cli_args(project)])


def promote(project: Path, version: str, stack: str = "dev"):  # type: ignore[no-untyped-def]
    return invoke(project, "promote", "-n", "qwen-test", "-v", version, "-s", stack)


def changes(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) between two texts."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [line[2:] for line in diff if line.startswith("- ")], [line[2:] for line in diff if line.startswith("+ ")]


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def status(aws: Aws, version: str) -> dict[str, str]:
    return dict(aws.table.get_item(Key={"model": "qwen-test", "version": version})["Item"]["stacks"])


def vllm_settings(path: Path) -> dict[str, str]:
    return dict(yaml.safe_load(path.read_text())["config"]["llm-platform:serving"]["vllm"])


def test_promote_adds_exactly_two_keys_to_the_dev_stack_file(versions: Aws, project: Path) -> None:
    dev, prod = project / "Pulumi.dev.yaml", project / "Pulumi.prod.yaml"
    dev_before, prod_before = dev.read_text(), prod.read_text()
    result = promote(project, "1.0.0")
    assert result.exit_code == 0, result.output
    assert "pulumi up -s dev" in result.stdout
    # Hand-written: the dev file has a serving section (apps), so vllm joins it; nothing else moves.
    assert changes(dev_before, dev.read_text()) == (
        [], ["    vllm:", "      modelSource: s3", "      model: models/qwen-test/1.0.0/"]
    )
    assert comments(dev.read_text()) == comments(dev_before)
    assert prod.read_text() == prod_before
    assert status(versions, "1.0.0") == {"dev": "active"}
    history = versions.table.get_item(Key={"model": "qwen-test", "version": "1.0.0"})["Item"]["history"]
    assert [(event["action"], event["stack"]) for event in history] == [("published", "dev"), ("promoted", "dev")]


def test_promote_sets_the_model_beside_prods_bucket_source(versions: Aws, project: Path) -> None:
    prod = project / "Pulumi.prod.yaml"
    before = prod.read_text()
    assert promote(project, "1.1.0", stack="prod").exit_code == 0
    # Hand-written: prod already streams from its bucket (modelSource s3, no model yet), so only the model joins.
    assert changes(before, prod.read_text()) == ([], ["      model: models/qwen-test/1.1.0/"])
    assert comments(prod.read_text()) == comments(before)
    assert status(versions, "1.1.0") == {"dev": "staged", "prod": "active"}


def test_promote_then_rollback_moves_file_and_rows(versions: Aws, project: Path) -> None:
    dev = project / "Pulumi.dev.yaml"
    assert promote(project, "1.0.0").exit_code == 0
    after_first = dev.read_text()
    assert promote(project, "1.1.0").exit_code == 0
    assert changes(after_first, dev.read_text()) == (
        ["      model: models/qwen-test/1.0.0/"], ["      model: models/qwen-test/1.1.0/"]
    )
    assert (status(versions, "1.0.0"), status(versions, "1.1.0")) == ({"dev": "staged"}, {"dev": "active"})

    result = invoke(project, "rollback", "-s", "dev")
    assert result.exit_code == 0, result.output
    assert "qwen-test 1.0.0 is active (was qwen-test 1.1.0)" in result.stdout
    assert dev.read_text() == after_first
    assert vllm_settings(dev) == {"modelSource": "s3", "model": "models/qwen-test/1.0.0/"}
    assert (status(versions, "1.0.0"), status(versions, "1.1.0")) == ({"dev": "active"}, {"dev": "staged"})

    assert "no earlier version to roll back to" in refusal(invoke(project, "rollback", "-s", "dev"))
    assert dev.read_text() == after_first


def test_promote_of_the_active_version_changes_nothing(versions: Aws, project: Path) -> None:
    assert promote(project, "1.0.0").exit_code == 0
    items = versions.items()
    again = promote(project, "1.0.0")
    assert again.exit_code == 0 and "already set in" in again.stdout
    assert versions.items() == items


def test_racing_promotes_leave_exactly_one_winner(
    versions: Aws, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reads the stack's state, B runs a whole promote, then A writes: A's conditional write must lose."""
    read_state = Registry.stack_state
    raced = []

    def read_then_let_b_run(self: Registry, stack: str):  # type: ignore[no-untyped-def]
        state = read_state(self, stack)
        if not raced:
            raced.append(True)
            release.promote(versions.backend("B"), project, "dev", "qwen-test", "1.1.0")
        return state

    monkeypatch.setattr(Registry, "stack_state", read_then_let_b_run)
    with pytest.raises(Failed, match="changed while this command ran"):
        release.promote(versions.backend("A"), project, "dev", "qwen-test", "1.0.0")

    assert (status(versions, "1.0.0"), status(versions, "1.1.0")) == ({"dev": "staged"}, {"dev": "active"})
    assert vllm_settings(project / "Pulumi.dev.yaml")["model"] == "models/qwen-test/1.1.0/"
    stack_item = versions.table.get_item(Key={"model": "@stack", "version": "dev"})["Item"]
    assert stack_item["active"] == {"model": "qwen-test", "version": "1.1.0"} and stack_item["seq"] == 1
    assert not list(project.glob(".*.tmp")), "the loser's staged stack file must be removed"


def test_two_promotes_from_one_read_cannot_both_commit(versions: Aws) -> None:
    registry = versions.backend().registry
    state = registry.stack_state("dev")
    registry.promote(state, release.Ref("qwen-test", "1.0.0"))
    with pytest.raises(Failed):
        registry.promote(state, release.Ref("qwen-test", "1.1.0"))
    assert (status(versions, "1.0.0"), status(versions, "1.1.0")) == ({"dev": "active"}, {"dev": "staged"})


def test_retire(versions: Aws, project: Path) -> None:
    assert promote(project, "1.0.0").exit_code == 0
    retire = ["retire", "-n", "qwen-test", "-s", "dev"]
    assert "is active on dev" in refusal(invoke(project, *retire, "-v", "1.0.0"))
    assert invoke(project, *retire, "-v", "1.1.0").exit_code == 0
    assert status(versions, "1.1.0") == {"dev": "retired"}
    assert "retired on dev" in refusal(promote(project, "1.1.0"))
    assert versions.s3.head_object(Bucket=BUCKET, Key="models/qwen-test/1.1.0/MANIFEST.json")


def test_rollback_refuses_a_retired_version(versions: Aws, project: Path) -> None:
    assert promote(project, "1.0.0").exit_code == 0
    assert promote(project, "1.1.0").exit_code == 0
    assert invoke(project, "retire", "-n", "qwen-test", "-v", "1.0.0", "-s", "dev").exit_code == 0
    before = (project / "Pulumi.dev.yaml").read_text()
    assert "retired on dev" in refusal(invoke(project, "rollback", "-s", "dev"))
    assert (project / "Pulumi.dev.yaml").read_text() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["promote", "-n", "qwen-test", "-v", "1.0", "-s", "dev"], "--version '1.0'"),
        (["promote", "-n", "qwen-test", "-v", "1.0.0", "-s", "qa"], "unknown stack 'qa'"),
        (["promote", "-n", "qwen-test", "-v", "3.0.0", "-s", "dev"], "qwen-test 3.0.0 is not in registry table"),
        (["rollback", "-s", "qa"], "unknown stack 'qa'"),
        (["rollback", "-s", "dev"], "no earlier version"),
    ],
)
def test_bad_promote_inputs_change_nothing(versions: Aws, project: Path, args: list[str], message: str) -> None:
    files = {path.name: path.read_bytes() for path in project.iterdir()}
    items = versions.items()
    assert message in refusal(invoke(project, *args))
    assert {path.name: path.read_bytes() for path in project.iterdir()} == files
    assert versions.items() == items


def test_an_edit_the_loader_rejects_is_not_written(versions: Aws, project: Path) -> None:
    """The edited file is validated by stacks/loader.py first: here the stack file already has a bad key."""
    dev = project / "Pulumi.dev.yaml"
    dev.write_text(dev.read_text().replace("minReplicas: 1", "minReplicas: -1"))
    before = dev.read_text()
    message = refusal(promote(project, "1.0.0"))
    assert "llm-platform:serving.apps.0.minReplicas" in message
    assert dev.read_text() == before and status(versions, "1.0.0") == {"dev": "staged"}
    assert not list(project.glob(".*.tmp"))
