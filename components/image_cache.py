"""The vLLM image through an in-region ECR pull-through cache: GPU nodes pull it from the stack's own registry over
the VPC's ECR interface endpoints, and ECR fetches it from Docker Hub once per image (not once per node).

Upstream facts (AWS ECR user guide, pull-through-cache-creating-rule.html and pull-through-cache-iam.html; ECR API
CreatePullThroughCacheRule): Docker Hub's upstream registry URL is `registry-1.docker.io`; a Docker Hub rule needs
credentials, a Secrets Manager secret named `ecr-pullthroughcache/...` in the same account and region; the
repository prefix is 2-30 characters; whoever pulls an uncached image needs `ecr:BatchImportUpstreamImage`, and
`ecr:CreateRepository` while the cache repository does not exist. Cached images are addressed as
`<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<upstream repository>:<tag>`."""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pydantic import Field

from components import iam
from components.config_base import StrictModel

DOCKER_HUB_URL = "registry-1.docker.io"
CACHE_PREFIX = "docker-hub"
CREDENTIAL_ARN_PATTERN = r"^arn:aws:secretsmanager:[a-zA-Z0-9-:]+:secret:ecr\-pullthroughcache\/[a-zA-Z0-9\/_+=.@-]+$"
PULL_THROUGH_ACTIONS = ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]


class ImageCacheConfig(StrictModel):
    """`addons.imageCache`: with a Docker Hub credential, the vLLM image comes through the stack's ECR."""

    docker_hub_credential_arn: str | None = Field(
        default=None,
        pattern=CREDENTIAL_ARN_PATTERN,
        description="Secrets Manager secret ecr-pullthroughcache/<name> with Docker Hub username and accessToken.",
    )


def cached_image(image: str, account_id: str, region: str) -> str:
    """A Docker Hub image as the cache serves it (official images would need their `library/` namespace; the
    images cached here all have an organisation)."""
    return f"{account_id}.dkr.ecr.{region}.amazonaws.com/{CACHE_PREFIX}/{image}"


def node_pull_statements(account_id: pulumi.Input[str], region: str) -> list[iam.Statement]:
    repositories = pulumi.Output.concat("arn:aws:ecr:", region, ":", account_id, ":repository/", CACHE_PREFIX, "/*")
    return [{"Effect": "Allow", "Action": PULL_THROUGH_ACTIONS, "Resource": repositories}]


@dataclass(frozen=True)
class ImageCacheArgs:
    credential_arn: str
    account_id: pulumi.Input[str]
    region: str
    # The Karpenter node role: nodes pull the images, so they import them into the cache on a first pull.
    node_role_name: pulumi.Input[str]


class ImageCache(pulumi.ComponentResource):
    def __init__(self, name: str, args: ImageCacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:ImageCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        rule = aws.ecr.PullThroughCacheRule(
            f"{name}-docker-hub",
            ecr_repository_prefix=CACHE_PREFIX,
            upstream_registry_url=DOCKER_HUB_URL,
            credential_arn=args.credential_arn,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-node-import",
            role=args.node_role_name,
            policy=iam.document(node_pull_statements(args.account_id, args.region)),
            opts=child,
        )
        self.register_outputs({"prefix": rule.ecr_repository_prefix})
