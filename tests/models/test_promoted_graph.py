"""A promoted stack, built by the offline engine: vLLM streams the promoted version's prefix from the model bucket."""

from pathlib import Path

from infra.models import release
from infra.offline import preview_stack

from .conftest import Aws, local_files


def test_vllm_of_a_promoted_stack_streams_the_promoted_prefix(aws: Aws, model: Path, project: Path) -> None:
    release.publish(aws.backend(), local_files(model), "qwen-test", "2.1.0", "dev", ("local", None))
    release.promote(aws.backend(), project, "dev", "qwen-test", "2.1.0")

    graph = preview_stack(project, "dev")
    deployment = graph.one("kubernetes:apps/v1:Deployment", "vllm-deployment")
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    bucket = graph.outputs["modelBucketName"]
    # vLLM's positional model argument, then runai streaming (vLLM docs: --load-format runai_streamer, s3:// URI).
    assert args[0] == f"s3://{bucket}/models/qwen-test/2.1.0/", deployment.urn
    assert args[args.index("--load-format") + 1] == "runai_streamer", deployment.urn
