"""ElastiCache Redis for the gateway's response cache and rate-limit counters."""

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random
from pydantic import Field

from components.config_base import StrictModel
from components.versions import ELASTICACHE_REDIS_VERSION

REDIS_PORT = 6379


class CacheConfig(StrictModel):
    node_type: str = Field(default="cache.t4g.micro", pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
    replicas: int = Field(default=1, ge=1, le=6, description="Nodes in the replication group (primary included).")
    snapshot_retention_days: int = Field(default=0, ge=0, le=35)

    @property
    def highly_available(self) -> bool:
        return self.replicas >= 2


@dataclass(frozen=True)
class CacheArgs:
    config: CacheConfig
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    client_security_group_id: pulumi.Input[str]
    # Refuse to delete the replication group (prod): it holds every key's rate-limit counters and the cache.
    protect: bool = False


class Cache(pulumi.ComponentResource):
    primary_endpoint: pulumi.Output[str]
    reader_endpoint: pulumi.Output[str]
    port: int
    auth_token: pulumi.Output[str]
    auth_secret_arn: pulumi.Output[str]

    def __init__(self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Cache", name, None, opts)
        config = args.config
        child = pulumi.ResourceOptions(parent=self)

        # ElastiCache tokens are 16-128 printable characters without @, " or /: letters and digits only.
        token = random.RandomPassword(f"{name}-auth-token", length=48, special=False, opts=child)
        self.auth_token = pulumi.Output.secret(token.result)
        secret = aws.secretsmanager.Secret(
            f"{name}-auth-token",
            description="AUTH token of the gateway's Redis (ElastiCache)",
            recovery_window_in_days=7,
            opts=child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-auth-token",
            secret_id=secret.id,
            secret_string=self.auth_token,
            opts=pulumi.ResourceOptions(parent=secret),
        )
        self.auth_secret_arn = secret.arn

        subnet_group = aws.elasticache.SubnetGroup(
            f"{name}-subnets", subnet_ids=args.subnet_ids, description="Private subnets of the platform", opts=child
        )
        security_group = aws.ec2.SecurityGroup(
            f"{name}-redis",
            vpc_id=args.vpc_id,
            description="Redis from the cluster's nodes only",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": REDIS_PORT,
                    "to_port": REDIS_PORT,
                    "security_groups": [args.client_security_group_id],
                    "description": "Redis from EKS nodes",
                }
            ],
            opts=child,
        )
        group = aws.elasticache.ReplicationGroup(
            f"{name}-redis",
            description="Gateway response cache and rate-limit counters",
            engine="redis",
            engine_version=ELASTICACHE_REDIS_VERSION,
            node_type=config.node_type,
            num_cache_clusters=config.replicas,
            automatic_failover_enabled=config.highly_available,
            multi_az_enabled=config.highly_available,
            port=REDIS_PORT,
            subnet_group_name=subnet_group.name,
            security_group_ids=[security_group.id],
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            auth_token=self.auth_token,
            auth_token_update_strategy="ROTATE",
            snapshot_retention_limit=config.snapshot_retention_days,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.primary_endpoint = group.primary_endpoint_address
        self.reader_endpoint = group.reader_endpoint_address
        self.port = REDIS_PORT

        self.register_outputs(
            {
                "primary_endpoint": self.primary_endpoint,
                "reader_endpoint": self.reader_endpoint,
                "port": self.port,
                "auth_secret_arn": self.auth_secret_arn,
            }
        )
