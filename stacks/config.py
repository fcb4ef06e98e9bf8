"""The typed configuration of one stack: everything `Pulumi.<stack>.yaml` may set under `llm-platform:`.

Keys are camelCase in YAML (Pulumi's convention) and snake_case in Python. Unknown keys are errors, so a
typo never silently falls back to a default.
"""

import ipaddress
import re
from typing import Annotated, Literal, Self, get_args

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from components.versions import SUPPORTED_KUBERNETES_VERSIONS
from stacks.addons_config import AddonsConfig
from stacks.config_base import StrictModel
from stacks.serving_config import ServingConfig

AWS_REGION_PATTERN = r"^(us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-\d$"
IAM_PRINCIPAL_PATTERN = r"^arn:aws(-[a-z]+)?:iam::\d{12}:(role|user)/[\w+=,.@/-]+$"
S3_BUCKET_PATTERN = r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
DNS_NAME_PATTERN = r"^(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
CLOUDWATCH_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)


def _cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"not an IPv4 CIDR block with its host bits zero, like 10.0.0.0/16 ({error})") from None
    return str(network)


def _region(value: str) -> str:
    if not re.fullmatch(AWS_REGION_PATTERN, value):
        raise ValueError("not an AWS region like us-west-2")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
Region = Annotated[str, AfterValidator(_region)]
ClusterLogType = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
# YAML reads an unquoted 1.34 as a float; a version is a string.
KubernetesVersion = Annotated[
    Literal[SUPPORTED_KUBERNETES_VERSIONS],  # type: ignore[valid-type]
    BeforeValidator(lambda value: str(value) if isinstance(value, float) else value),
]


class NetworkConfig(StrictModel):
    vpc_cidr: Cidr = "10.0.0.0/16"
    az_count: int = Field(default=2, ge=2, le=3)
    nat_gateways: Literal["single", "per_az"] = "single"
    public_subnet_cidrs: list[Cidr] | None = Field(
        default=None, description="One per AZ; default: /20 blocks carved from the end of the VPC CIDR."
    )
    private_subnet_cidrs: list[Cidr] | None = Field(
        default=None, description="One per AZ; default: /18 blocks from the start of the VPC CIDR."
    )
    flow_log_retention_days: int = 30

    def subnet_plan(self) -> tuple[list[str], list[str]]:
        """(public, private) CIDRs, one per AZ: the configured ones, or private /N+2 blocks from the start of
        the VPC and public /N+4 blocks from its last quarter, which leaves room for a third AZ in any layout."""
        quarters = list(ipaddress.IPv4Network(self.vpc_cidr).subnets(prefixlen_diff=2))
        private = self.private_subnet_cidrs or [str(block) for block in quarters[: self.az_count]]
        public = self.public_subnet_cidrs or [
            str(block) for block in list(quarters[3].subnets(prefixlen_diff=2))[: self.az_count]
        ]
        return public, private

    @model_validator(mode="after")
    def subnets_fit(self) -> Self:
        if self.flow_log_retention_days not in CLOUDWATCH_RETENTION_DAYS:
            raise ValueError(
                f"flowLogRetentionDays {self.flow_log_retention_days} is not a CloudWatch retention; "
                f"allowed: {', '.join(map(str, CLOUDWATCH_RETENTION_DAYS))}"
            )
        vpc = ipaddress.IPv4Network(self.vpc_cidr)
        if vpc.prefixlen > 20:
            raise ValueError(f"vpcCidr {vpc} is too small for an EKS cluster; use /16 to /20")
        for key, cidrs in (("publicSubnetCidrs", self.public_subnet_cidrs),
                           ("privateSubnetCidrs", self.private_subnet_cidrs)):
            if cidrs is not None and len(cidrs) != self.az_count:
                raise ValueError(f"{key} has {len(cidrs)} entries; azCount is {self.az_count}, give one per AZ")
        public, private = self.subnet_plan()
        chosen: list[tuple[str, ipaddress.IPv4Network]] = []
        for key, cidrs in (("publicSubnetCidrs", public), ("privateSubnetCidrs", private)):
            for cidr in cidrs:
                subnet = ipaddress.IPv4Network(cidr)
                if not subnet.subnet_of(vpc):
                    raise ValueError(f"{key} entry {subnet} does not fit in vpcCidr {vpc}")
                for other_key, other in chosen:
                    if subnet.overlaps(other):
                        raise ValueError(f"{key} entry {subnet} overlaps {other_key} entry {other}")
                chosen.append((key, subnet))
        return self


class NodeGroupConfig(StrictModel):
    instance_types: list[str] = Field(default_factory=lambda: ["m6i.large"], min_length=1)
    min_size: int = Field(default=2, ge=1)
    desired_size: int = Field(default=2, ge=1)
    max_size: int = Field(default=3, ge=1, le=100)
    disk_size_gib: int = Field(default=50, ge=20, le=1000)

    @model_validator(mode="after")
    def sizes_ordered(self) -> Self:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"need minSize <= desiredSize <= maxSize, got {self.min_size}, {self.desired_size}, "
                f"{self.max_size}"
            )
        for instance_type in self.instance_types:
            if not re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z0-9]+", instance_type):
                raise ValueError(f"instanceTypes entry {instance_type!r} is not an EC2 instance type like m6i.large")
        return self


class ClusterConfig(StrictModel):
    name: str | None = Field(
        default=None, pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,99}$", description="Default: llm-<stack>."
    )
    kubernetes_version: KubernetesVersion | None = Field(
        default=None, description="Default: the version pinned in components/versions.py."
    )
    public_endpoint: bool = True
    public_access_cidrs: list[Cidr] = Field(default_factory=list)
    log_types: list[ClusterLogType] = Field(default_factory=lambda: list(get_args(ClusterLogType)))
    admin_principal_arns: list[Annotated[str, Field(pattern=IAM_PRINCIPAL_PATTERN)]] = Field(default_factory=list)
    system_nodes: NodeGroupConfig = Field(default_factory=NodeGroupConfig)

    @model_validator(mode="after")
    def public_endpoint_restricted(self) -> Self:
        if self.public_endpoint and not self.public_access_cidrs:
            raise ValueError(
                "publicEndpoint is true but publicAccessCidrs is empty; list the CIDRs allowed to reach the "
                "API server, or set publicEndpoint: false"
            )
        if "0.0.0.0/0" in self.public_access_cidrs:
            raise ValueError("publicAccessCidrs must not contain 0.0.0.0/0; restrict it to your office/VPN CIDRs")
        return self


class CacheConfig(StrictModel):
    node_type: str = Field(default="cache.t4g.micro", pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
    replicas: int = Field(default=1, ge=1, le=6, description="Nodes in the replication group (primary included).")
    snapshot_retention_days: int = Field(default=0, ge=0, le=35)

    @property
    def highly_available(self) -> bool:
        return self.replicas >= 2


class ModelStoreConfig(StrictModel):
    bucket_name: str | None = Field(
        default=None, pattern=S3_BUCKET_PATTERN, description="Default: <project>-<stack>-models-<account id>."
    )
    noncurrent_version_expiration_days: int = Field(default=30, ge=1, le=3650)
    force_destroy: bool = False


class EdgeConfig(StrictModel):
    domain: str | None = Field(default=None, pattern=DNS_NAME_PATTERN)
    hosted_zone_id: str | None = Field(default=None, pattern=r"^Z[A-Z0-9]{1,31}$")
    waf_rate_limit_per_5min: int = Field(default=2000, ge=10, le=2_000_000_000)

    @model_validator(mode="after")
    def zone_needs_domain(self) -> Self:
        if self.hosted_zone_id and not self.domain:
            raise ValueError("hostedZoneId is set but domain is not; the zone only validates the domain's certificate")
        return self


class PlatformConfig(StrictModel):
    """The whole stack. `profile` picks the per-stack defaults (see stacks/defaults.py)."""

    profile: Literal["dev", "prod"]
    region: Region = "us-west-2"
    tags: dict[str, str] = Field(default_factory=dict)
    monthly_budget_usd: float = Field(default=1000, gt=0)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    cluster: ClusterConfig = Field(default_factory=lambda: ClusterConfig(public_endpoint=False))
    cache: CacheConfig = Field(default_factory=CacheConfig)
    model_store: ModelStoreConfig = Field(default_factory=ModelStoreConfig)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    addons: AddonsConfig = Field(default_factory=AddonsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)

    @model_validator(mode="after")
    def tags_valid(self) -> Self:
        for key, value in self.tags.items():
            if key.startswith("aws:") or not 0 < len(key) <= 128 or len(value) > 256:
                raise ValueError(f"tag {key!r}: keys are 1-128 characters not starting with 'aws:', values <= 256")
        return self
