"""Fixtures for the release CLI: a moto AWS (bucket and registry table), small fake models, a copy of the project's
stack files to edit."""

import json
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from graph_helpers import copy_stack_files
from moto import mock_aws

from components.model_store import REGISTRY_PARTITION_KEY, REGISTRY_SORT_KEY
from infra.models import release
from infra.models.manifest import LocalFile, scan_model_dir
from infra.models.registry import Registry

REGION = "us-west-2"
BUCKET = "llm-platform-dev-models-123456789012"
TABLE = "model-store-registry-0123456"


def safetensors(values: int, seed: int) -> bytes:
    """A valid safetensors file (8-byte header length, JSON header, data) with one F32 tensor of random values."""
    header = json.dumps({"weight": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    return struct.pack("<Q", len(header)) + header + random.Random(seed).randbytes(4 * values)


def make_model(directory: Path, seed: int = 0, shards: int = 2, values: int = 600) -> Path:
    """What a Hugging Face snapshot looks like, a few KB: config, tokenizer, sharded safetensors and their index."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    for index, name in enumerate(names):
        (directory / name).write_bytes(safetensors(values + index, seed * 100 + index))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"weight": names[0]}}))
    (directory / "config.json").write_text(json.dumps({"model_type": "qwen2", "seed": seed}))
    (directory / "tokenizer.json").write_text(json.dumps({"version": "1.0", "seed": seed}))
    return directory


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, a region, no endpoint override, and never the user's Pulumi CLI."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "LLM_PLATFORM_MODEL_BUCKET", "LLM_PLATFORM_MODEL_TABLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("LLM_PLATFORM_PULUMI", "")


def create_store(endpoint_url: str | None = None) -> None:
    """The bucket and the registry table as components/model_store.py declares their keys."""
    boto3.client("s3", region_name=REGION, endpoint_url=endpoint_url).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint_url).create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": REGISTRY_PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": REGISTRY_SORT_KEY, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": REGISTRY_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": REGISTRY_SORT_KEY, "AttributeType": "S"},
        ],
    )


class Calls:
    """S3 and DynamoDB operations a client made, by name, counted from botocore's events."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        self.keys: list[str] = []
        client.meta.events.register("before-parameter-build.*.*", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.names.append(model.name)
        self.keys.append(params.get("Key", ""))

    def count(self, *names: str) -> int:
        return sum(self.names.count(name) for name in names)

    def clear(self) -> None:
        self.names.clear()
        self.keys.clear()


@dataclass
class Aws:
    s3: Any
    table: Any

    def backend(self, actor: str = "tester") -> release.Backend:
        return release.Backend(self.s3, BUCKET, Registry(self.table, actor))

    def object_keys(self) -> list[str]:
        return [obj["Key"] for obj in self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]

    def items(self) -> list[dict[str, Any]]:
        return list(self.table.scan()["Items"])


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        create_store()
        yield Aws(boto3.client("s3", region_name=REGION), boto3.resource("dynamodb", region_name=REGION).Table(TABLE))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's Pulumi.yaml and stack files, for commands that edit them."""
    return copy_stack_files(tmp_path / "project")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")


def local_files(directory: Path) -> list[LocalFile]:
    return scan_model_dir(directory)[0]


def cli_args(project: Path) -> list[str]:
    return ["--project-dir", str(project), "--bucket", BUCKET, "--table", TABLE]


def refusal(result: Any) -> str:
    """The one-line error of a refused command (exit 2): the last line on stderr, no traceback anywhere."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("refused: "), result.stderr
    return str(last)
