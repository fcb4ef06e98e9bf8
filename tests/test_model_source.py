"""Prod serves weights from its own model bucket: the first deploy (empty bucket) has nothing to start, and once a
version is published (agreement with the model release CLI: `serving.vllm.model: models/<name>/<version>/`) vLLM
streams it from S3."""

from pathlib import Path
from typing import Any

import pytest

from infra.offline import Graph, build_graph
from stacks.loader import ConfigError, as_engine_config, read_stack_file, stack_file, validate

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
PAUSE = "autoscaling.keda.sh/paused-replicas"
PUBLISHED = "models/qwen2.5-7b-instruct/2026-11-30/"
HF_TOKEN_ENV = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}


@pytest.fixture(scope="module")
def published_prod_graph() -> Graph:
    """Prod after the release CLI promoted a version: exactly the key it writes, on top of Pulumi.prod.yaml."""
    values = read_stack_file(stack_file(PROJECT_DIR, "prod"))
    values["serving"]["vllm"] = {**values["serving"]["vllm"], "modelSource": "s3", "model": PUBLISHED}
    return build_graph(validate("prod", values, "test"), "prod", as_engine_config(values))


def _vllm(graph: Graph) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = graph.one(DEPLOYMENT, "vllm-deployment").inputs["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    return spec, container


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_prod_streams_the_published_version_from_its_bucket(published_prod_graph: Graph) -> None:
    spec, container = _vllm(published_prod_graph)
    bucket = published_prod_graph.outputs["modelBucketName"]
    assert container["args"][0] == f"s3://{bucket}/{PUBLISHED}"
    assert _flag(container["args"], "--load-format") == "runai_streamer"
    assert spec["replicas"] >= 1, "a published model is served from the first deploy that names it"
    scaled = published_prod_graph.one(SCALED_OBJECT, "vllm-scaledobject")
    assert PAUSE not in scaled.inputs["metadata"].get("annotations", {})
    assert not HF_TOKEN_ENV & {item["name"] for item in container["env"]}, "prod needs no Hugging Face token"
    # Clients keep one name across versions: the gateway and vLLM agree on it.
    assert _flag(container["args"], "--served-model-name") == "qwen2.5-7b-instruct"


def test_prod_first_deploy_starts_no_pod_before_a_model_is_published(prod_graph: Graph) -> None:
    """The bucket is created by the same `pulumi up`: a vLLM pod would find nothing and fail the Deployment's
    await. So no replicas, and KEDA paused at zero so neither minReplicaCount nor a held request starts one."""
    spec, container = _vllm(prod_graph)
    assert prod_graph.config.serving.vllm.model_source == "s3"
    assert spec["replicas"] == 0
    assert prod_graph.one(SCALED_OBJECT, "vllm-scaledobject").inputs["metadata"]["annotations"] == {PAUSE: "0"}
    assert container["args"][0].startswith(f"s3://{prod_graph.outputs['modelBucketName']}/")


def test_dev_still_serves_from_the_hub_unpaused(dev_graph: Graph) -> None:
    spec, container = _vllm(dev_graph)
    assert container["args"][0] == "Qwen/Qwen2.5-7B-Instruct"
    assert "--load-format" not in container["args"]
    assert spec["replicas"] == dev_graph.config.serving.vllm.min_replicas
    assert PAUSE not in dev_graph.one(SCALED_OBJECT, "vllm-scaledobject").inputs["metadata"].get("annotations", {})


def test_bucket_source_without_a_model_needs_the_client_name() -> None:
    with pytest.raises(ConfigError, match=r"llm-platform:serving\.vllm: modelSource s3 without a published model"):
        validate("dev", {"serving": {"vllm": {"modelSource": "s3"}}}, "Pulumi.dev.yaml")
