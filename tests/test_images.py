"""Images the stack builds: ECR repositories, BuildKit build inputs under mocks, and Deployments on the digest."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from components.images import context_digest
from infra.offline import Graph, build_graph
from stacks.loader import ConfigError, as_engine_config, read_stack_file, stack_file, validate

PROJECT_DIR = Path(__file__).resolve().parent.parent
IMAGE = "docker-build:index:Image"
REPOSITORY = "aws:ecr/repository:Repository"
# ECR's repository URL form, <account>.dkr.ecr.<region>.amazonaws.com/<name>, and a pinned manifest digest.
PUSHED_DIGEST = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9/_.-]+@sha256:[0-9a-f]{64}$")


def _container(graph: Graph, deployment: str) -> dict[str, Any]:
    (container,) = graph.one("kubernetes:apps/v1:Deployment", deployment).inputs["spec"]["template"]["spec"][
        "containers"
    ]
    return container


def _build(graph: Graph, name: str) -> dict[str, Any]:
    inputs: dict[str, Any] = graph.one(IMAGE, f"{name}-image-image").inputs
    return inputs


@pytest.mark.parametrize(
    ("stack", "name", "context", "dockerfile"),
    [
        ("dev", "gateway", ".", "serving/Dockerfile"),
        ("prod", "gateway", ".", "serving/Dockerfile"),
        ("dev", "flask-api", "examples/flask-api", "examples/flask-api/Dockerfile"),
    ],
)
def test_images_build_for_the_nodes_and_push_with_a_registry_cache(
    request: pytest.FixtureRequest, stack: str, name: str, context: str, dockerfile: str
) -> None:
    graph: Graph = request.getfixturevalue(f"{stack}_graph")
    build = _build(graph, name)
    repository = graph.one(REPOSITORY, f"{name}-image-repository")
    url = f"123456789012.dkr.ecr.us-west-2.amazonaws.com/{repository.inputs['name']}"
    assert build["platforms"] == ["linux/amd64"], "Karpenter's pools launch amd64 nodes only"
    assert build["push"] is True
    assert Path(build["context"]["location"]) == PROJECT_DIR / context
    assert Path(build["dockerfile"]["location"]) == PROJECT_DIR / dockerfile
    (tag,) = build["tags"]
    assert tag.startswith(f"{url}:")
    assert build["cacheFrom"] == [{"registry": {"ref": f"{url}:buildcache"}}]
    (cache_to,) = build["cacheTo"]
    # ECR stores a BuildKit cache only as an OCI image manifest (pulumi-docker-build's CacheToRegistry docs).
    assert cache_to["registry"] == {"ref": f"{url}:buildcache", "imageManifest": True, "ociMediaTypes": True,
                                    "mode": "max"}
    assert build["registries"] == "[secret]", "the ECR login token must not reach the state in plain text"
    # The login is for this repository's registry (its address and token come from the repository).
    assert repository.urn in graph.one(IMAGE, f"{name}-image-image").property_dependencies["registries"]


def test_repositories_scan_encrypt_and_keep_tags_immutable(graph: Graph) -> None:
    repositories = graph.of_type(REPOSITORY)
    assert {r.inputs["name"] for r in repositories} >= {f"llm-platform-{graph.stack}/gateway"}
    for repository in repositories:
        inputs = repository.inputs
        assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
        # Immutable except the one cache tag BuildKit overwrites on every build.
        assert inputs["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
        assert inputs["imageTagMutabilityExclusionFilters"] == [{"filter": "buildcache", "filterType": "WILDCARD"}]
        assert inputs["forceDelete"] is (graph.stack == "dev"), "only dev deletes pushed images on destroy"
        (policy,) = [p for p in graph.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
                     if p.parent == repository.urn]
        rules = json.loads(policy.inputs["policy"])["rules"]
        assert {rule["selection"]["tagStatus"] for rule in rules} == {"untagged", "tagged"}
        assert all(rule["action"] == {"type": "expire"} for rule in rules)


def test_deployments_run_the_pushed_digest(dev_graph: Graph, prod_graph: Graph) -> None:
    for graph, deployment in ((dev_graph, "gateway-deployment"), (prod_graph, "gateway-deployment"),
                              (dev_graph, "apps-flask-api")):
        image = _container(graph, deployment)["image"]
        assert PUSHED_DIGEST.match(image), f"{deployment} in {graph.stack} runs {image}, not a pushed digest"
        repository = graph.one(REPOSITORY, f"{deployment.removesuffix('-deployment').removeprefix('apps-')}"
                                           "-image-repository")
        assert image.split("@")[0].endswith("/" + repository.inputs["name"])


def test_a_named_image_is_run_as_is_and_nothing_is_built() -> None:
    values = read_stack_file(stack_file(PROJECT_DIR, "dev"))
    values["serving"]["gateway"] = {"image": "registry.example.com/gateway:1.2.3"}
    values["serving"]["apps"][0] = {**values["serving"]["apps"][0], "image": "registry.example.com/api:2.0.0"}
    del values["serving"]["apps"][0]["build"]
    graph = build_graph(validate("dev", values, "test"), "dev", as_engine_config(values))
    assert graph.of_type(IMAGE) == [] and graph.of_type(REPOSITORY) == []
    assert _container(graph, "gateway-deployment")["image"] == "registry.example.com/gateway:1.2.3"
    assert _container(graph, "apps-flask-api")["image"] == "registry.example.com/api:2.0.0"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_tag_follows_what_buildkit_sends_and_nothing_else(tmp_path: Path) -> None:
    _write(tmp_path, {
        "Dockerfile": "FROM scratch\nCOPY app /app\n",
        "Dockerfile.dockerignore": "*\n!app\n**/__pycache__\n",
        "app/main.py": "print(1)\n",
        "app/__pycache__/main.pyc": "x",
        "docs/readme.md": "hello\n",
    })
    dockerfile = tmp_path / "Dockerfile"
    first = context_digest(tmp_path, dockerfile)
    _write(tmp_path, {"docs/readme.md": "changed\n", "app/__pycache__/main.pyc": "y"})
    assert context_digest(tmp_path, dockerfile) == first, "ignored files must not make a new tag"
    _write(tmp_path, {"app/main.py": "print(2)\n"})
    second = context_digest(tmp_path, dockerfile)
    assert second != first, "a changed source must make a new immutable tag"
    _write(tmp_path, {"Dockerfile": "FROM scratch\nCOPY app /srv\n"})
    assert context_digest(tmp_path, dockerfile) != second


def test_app_needs_exactly_one_of_image_or_build() -> None:
    base = {"name": "web", "port": 80}
    for app, message in (
        (base, "set exactly one of image"),
        ({**base, "image": "web:1.0", "build": {"context": "examples/flask-api"}}, "set exactly one of image"),
        ({**base, "build": {"context": "examples/nothing-here"}}, "no Dockerfile in examples/nothing-here/"),
        ({**base, "build": {"context": "../outside"}}, "pattern"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate("dev", {"serving": {"apps": [app]}}, "Pulumi.dev.yaml")
