"""The release CLI as a user runs it: real processes, against a moto server over HTTP on 127.0.0.1 (AWS_ENDPOINT_URL),
credentials and names from the environment."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from .conftest import BUCKET, REGION, TABLE, create_store

CLI = [sys.executable, "-m", "infra.cli", "models"]
PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def run(endpoint: str, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(project),
        "COLUMNS": "200",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "LLM_PLATFORM_MODEL_BUCKET": BUCKET,
        "LLM_PLATFORM_MODEL_TABLE": TABLE,
        "LLM_PLATFORM_PULUMI": "",
    }
    return subprocess.run(
        [*CLI, *args, "--project-dir", str(project)],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_publish_verify_promote_through_a_moto_server(endpoint: str, model: Path, project: Path) -> None:
    create_store(endpoint)
    published = run(endpoint, project, "publish", str(model), "-n", "qwen-test", "-v", "1.0.0", "-s", "dev")
    assert published.returncode == 0, published.stderr
    assert "published qwen-test 1.0.0" in published.stdout

    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert "models/qwen-test/1.0.0/MANIFEST.json" in keys
    assert "models/qwen-test/1.0.0/model-00001-of-00002.safetensors" in keys

    verified = run(endpoint, project, "verify", "-n", "qwen-test", "-v", "1.0.0", "-s", "dev", "--deep")
    assert verified.returncode == 0, verified.stderr
    promoted = run(endpoint, project, "promote", "-n", "qwen-test", "-v", "1.0.0", "-s", "dev")
    assert promoted.returncode == 0, promoted.stderr
    assert "now run: pulumi up -s dev" in promoted.stdout
    vllm = yaml.safe_load((project / "Pulumi.dev.yaml").read_text())["config"]["llm-platform:serving"]["vllm"]
    assert vllm == {"modelSource": "s3", "model": "models/qwen-test/1.0.0/"}

    listed = run(endpoint, project, "list", "-s", "dev")
    assert listed.returncode == 0, listed.stderr
    assert "1.0.0" in listed.stdout and "active" in listed.stdout


def test_a_refusal_is_one_line_and_exit_2(endpoint: str, model: Path, project: Path) -> None:
    result = run(endpoint, project, "publish", str(model), "-n", "qwen-test", "-v", "1.0", "-s", "dev")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "refused: --version '1.0': use MAJOR.MINOR.PATCH[-prerelease], like 1.2.0 or 1.2.0-rc.1"
    )
