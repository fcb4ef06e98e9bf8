"""`models verify`: exit 1 on any object that is missing, replaced, altered or extra, against the manifest."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.models import release
from infra.models.cli import app

from .conftest import BUCKET, Aws, cli_args, local_files

runner = CliRunner()
PREFIX = "models/qwen-test/1.0.0/"
SHARD = "model-00002-of-00002.safetensors"


@pytest.fixture
def published(aws: Aws, model: Path) -> Aws:
    release.publish(aws.backend(), local_files(model), "qwen-test", "1.0.0", "dev", ("local", None))
    return aws


def verify(project: Path, *extra: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["verify", "-n", "qwen-test", "-v", "1.0.0", "-s", "dev", *cli_args(project), *extra])


def test_intact_version_passes_shallow_and_deep(published: Aws, project: Path) -> None:
    assert verify(project).exit_code == 0
    assert verify(project, "--deep").exit_code == 0


def test_missing_object_fails(published: Aws, project: Path) -> None:
    published.s3.delete_object(Bucket=BUCKET, Key=PREFIX + SHARD)
    result = verify(project)
    assert result.exit_code == 1
    assert f"mismatch: {SHARD}: missing" in result.stderr


def test_replaced_object_fails_without_deep(published: Aws, project: Path, model: Path) -> None:
    """Someone `aws s3 cp`s another file over a shard: same name, no stored hash."""
    tampered = bytearray((model / SHARD).read_bytes())
    tampered[-1] ^= 0xFF
    published.s3.put_object(Bucket=BUCKET, Key=PREFIX + SHARD, Body=bytes(tampered))
    result = verify(project)
    assert result.exit_code == 1
    assert SHARD in result.stderr and "sha256 metadata" in result.stderr


def test_altered_bytes_behind_intact_metadata_fail_only_deep(published: Aws, project: Path, model: Path) -> None:
    head = published.s3.head_object(Bucket=BUCKET, Key=PREFIX + SHARD)
    tampered = bytearray((model / SHARD).read_bytes())
    tampered[100] ^= 0x01  # one bit, same size, same metadata
    published.s3.put_object(Bucket=BUCKET, Key=PREFIX + SHARD, Body=bytes(tampered), Metadata=head["Metadata"])
    assert verify(project).exit_code == 0
    deep = verify(project, "--deep")
    assert deep.exit_code == 1
    assert f"{SHARD}: content sha256 differs" in deep.stderr


def test_an_extra_shard_under_the_prefix_fails(published: Aws, project: Path) -> None:
    published.s3.put_object(Bucket=BUCKET, Key=PREFIX + "model-00003-of-00003.safetensors", Body=b"x")
    result = verify(project)
    assert result.exit_code == 1
    assert "model-00003-of-00003.safetensors: not in the manifest" in result.stderr


def test_a_rewritten_manifest_fails(published: Aws, project: Path) -> None:
    body = published.s3.get_object(Bucket=BUCKET, Key=PREFIX + "MANIFEST.json")["Body"].read()
    published.s3.put_object(Bucket=BUCKET, Key=PREFIX + "MANIFEST.json", Body=body.replace(b'"local"', b'"other"'))
    result = verify(project)
    assert result.exit_code == 1
    assert "MANIFEST.json: differs from the one the registry recorded" in result.stderr


def test_unknown_version_is_refused(published: Aws, project: Path) -> None:
    result = runner.invoke(app, ["verify", "-n", "qwen-test", "-v", "9.9.9", "-s", "dev", *cli_args(project)])
    assert result.exit_code == 2
    assert "qwen-test 9.9.9 is not in registry table" in result.stderr
