"""Images the stack builds itself: an ECR repository per image, and the image built with BuildKit and pushed
during `pulumi up` (pulumi-docker-build), so workloads run exactly the digest this deploy pushed."""

import fnmatch
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build
from pydantic import Field

from components import contracts
from components.config_base import StrictModel

# BuildKit's registry cache lives beside the images under this one mutable tag; every other tag is immutable.
CACHE_TAG = "buildcache"
# Tagged images kept for rollback; untagged manifests (left behind by a re-pushed cache) go after a week.
KEEP_IMAGES = 20
UNTAGGED_EXPIRY_DAYS = 7


# A relative path inside the repository: no leading /, no `..` part.
RELATIVE_PATH = r"^(?!(.*/)?\.\.(/|$))[\w.-]+(/[\w.-]+)*$"


class BuildConfig(StrictModel):
    """Where an image's sources are: a folder of this repository and the Dockerfile in it."""

    context: str = Field(pattern=RELATIVE_PATH, description="Folder relative to the repository root.")
    dockerfile: str = Field(default="Dockerfile", pattern=RELATIVE_PATH, description="Relative to context.")


def _ignore_patterns(context: Path, dockerfile: Path) -> list[tuple[bool, str]]:
    """The .dockerignore BuildKit applies: `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's
    `.dockerignore`. Each pattern as (re-includes, pattern); later patterns override earlier ones."""
    for candidate in (dockerfile.with_name(f"{dockerfile.name}.dockerignore"), context / ".dockerignore"):
        if candidate.is_file():
            lines = [line.strip() for line in candidate.read_text().splitlines()]
            return [
                (line.startswith("!"), line.removeprefix("!").strip("/"))
                for line in lines
                if line and not line.startswith("#")
            ]
    return []


def _matches(path: str, pattern: str) -> bool:
    """Docker's rule, near enough: the pattern matches the path or a folder above it; `**/x` also matches x at the
    root."""
    parts = path.split("/")
    for index in range(len(parts)):
        prefix = "/".join(parts[: index + 1])
        if fnmatch.fnmatchcase(prefix, pattern) or (
            pattern.startswith("**/") and fnmatch.fnmatchcase(prefix, pattern.removeprefix("**/"))
        ):
            return True
    return False


def _ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Whether `path` (relative, with /) is left out of the context: the last pattern that matches decides."""
    ignored = False
    for include, pattern in patterns:
        if _matches(path, pattern):
            ignored = not include
    return ignored


def _may_reinclude(folder: str, patterns: list[tuple[bool, str]]) -> bool:
    return any(include and (pattern.startswith(f"{folder}/") or "*" in pattern) for include, pattern in patterns)


def context_digest(context: Path, dockerfile: Path) -> str:
    """SHA-256 over the Dockerfile and every file BuildKit would send (names and contents): the image's tag, so a
    change of sources is a new immutable tag and an unchanged tree rebuilds nothing."""
    patterns = _ignore_patterns(context, dockerfile)
    digest = hashlib.sha256(dockerfile.read_bytes())
    pending = [context]
    files: list[Path] = []
    while pending:
        folder = pending.pop()
        for entry in sorted(folder.iterdir()):
            relative = entry.relative_to(context).as_posix()
            if entry.is_dir():
                if not _ignored(relative, patterns) or _may_reinclude(relative, patterns):
                    pending.append(entry)
            elif entry.is_file() and not _ignored(relative, patterns):
                files.append(entry)
    for path in sorted(files):
        digest.update(path.relative_to(context).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def lifecycle_policy() -> str:
    rules = [
        {
            "rulePriority": 1,
            "description": f"Untagged manifests (replaced cache layers) after {UNTAGGED_EXPIRY_DAYS} days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": UNTAGGED_EXPIRY_DAYS,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"Keep the last {KEEP_IMAGES} tagged images for rollback",
            "selection": {"tagStatus": "tagged", "tagPatternList": ["*"], "countType": "imageCountMoreThan",
                          "countNumber": KEEP_IMAGES},
            "action": {"type": "expire"},
        },
    ]
    return json.dumps({"rules": rules})


@dataclass(frozen=True)
class BuiltImageArgs:
    repository_name: str
    context: Path
    dockerfile: Path
    # Dev deletes the repository with its images on destroy; prod refuses while images remain.
    force_delete: bool


class BuiltImage(pulumi.ComponentResource):
    # `<repository URL>@sha256:<digest>`: the exact image this deploy pushed.
    image: pulumi.Output[str]
    repository_url: pulumi.Output[str]

    def __init__(self, name: str, args: BuiltImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:BuiltImage", name, None, opts)
        repository = aws.ecr.Repository(
            f"{name}-repository",
            name=args.repository_name,
            image_scanning_configuration={"scan_on_push": True},
            image_tag_mutability="IMMUTABLE_WITH_EXCLUSION",
            image_tag_mutability_exclusion_filters=[{"filter": CACHE_TAG, "filter_type": "WILDCARD"}],
            encryption_configurations=[{"encryption_type": "KMS"}],
            force_delete=args.force_delete,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repository.name,
            policy=lifecycle_policy(),
            opts=pulumi.ResourceOptions(parent=repository),
        )
        token = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        url = repository.repository_url
        cache = url.apply(lambda repo: f"{repo}:{CACHE_TAG}")
        image = docker_build.Image(
            f"{name}-image",
            context={"location": str(args.context)},
            dockerfile={"location": str(args.dockerfile)},
            platforms=[docker_build.Platform(f"linux/{contracts.NODE_ARCHITECTURE}")],
            tags=[url.apply(lambda repo: f"{repo}:{context_digest(args.context, args.dockerfile)[:16]}")],
            push=True,
            registries=[
                {
                    "address": url.apply(lambda repo: repo.split("/", 1)[0]),
                    "username": token.user_name,
                    "password": pulumi.Output.secret(token.password),
                }
            ],
            cache_from=[{"registry": {"ref": cache}}],
            # ECR accepts a cache only as an OCI image manifest; mode max also caches the build stage's layers.
            cache_to=[
                {
                    "registry": {
                        "ref": cache,
                        "image_manifest": True,
                        "oci_media_types": True,
                        "mode": docker_build.CacheMode.MAX,
                    }
                }
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.repository_url = url
        self.image = pulumi.Output.concat(url, "@", image.digest)
        self.register_outputs({"image": self.image, "repository_url": self.repository_url})
