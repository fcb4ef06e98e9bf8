"""The VPC: public subnets for load balancers, private subnets for nodes, NAT, VPC endpoints, flow logs."""

import ipaddress
from dataclasses import dataclass
from typing import Literal, Self

import pulumi
import pulumi_aws as aws
from pydantic import Field, model_validator

from components import iam
from components.config_base import Cidr, StrictModel

# Interface endpoints that keep image pulls and credential exchange off the NAT gateways.
INTERFACE_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "sts")
CLOUDWATCH_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)


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


@dataclass(frozen=True)
class NetworkArgs:
    config: NetworkConfig
    region: str
    cluster_name: str


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    availability_zones: list[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Network", name, None, opts)
        config = args.config
        child = pulumi.ResourceOptions(parent=self)

        zones = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(parent=self)).names
        if len(zones) < config.az_count:
            raise ValueError(f"region {args.region} has {len(zones)} available AZs; azCount is {config.az_count}")
        self.availability_zones = list(zones[: config.az_count])
        public_cidrs, private_cidrs = config.subnet_plan()
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=config.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        self.vpc_id = vpc.id
        vpc_child = pulumi.ResourceOptions(parent=vpc)
        internet_gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"}, opts=vpc_child
        )

        public_route_table = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": internet_gateway.id}],
            tags={"Name": f"{name}-public"},
            opts=vpc_child,
        )
        public_subnets = []
        private_subnets = []
        for index, zone in enumerate(self.availability_zones):
            public_subnet = aws.ec2.Subnet(
                f"{name}-public-{zone}",
                vpc_id=vpc.id,
                availability_zone=zone,
                cidr_block=public_cidrs[index],
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-public-{zone}", "kubernetes.io/role/elb": "1", **cluster_tag},
                opts=vpc_child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}",
                subnet_id=public_subnet.id,
                route_table_id=public_route_table.id,
                opts=pulumi.ResourceOptions(parent=public_subnet),
            )
            public_subnets.append(public_subnet)
            private_subnets.append(
                aws.ec2.Subnet(
                    f"{name}-private-{zone}",
                    vpc_id=vpc.id,
                    availability_zone=zone,
                    cidr_block=private_cidrs[index],
                    tags={
                        "Name": f"{name}-private-{zone}",
                        "kubernetes.io/role/internal-elb": "1",
                        "karpenter.sh/discovery": args.cluster_name,
                        **cluster_tag,
                    },
                    opts=vpc_child,
                )
            )
        self.public_subnet_ids = [subnet.id for subnet in public_subnets]
        self.private_subnet_ids = [subnet.id for subnet in private_subnets]

        nat_zones = self.availability_zones if config.nat_gateways == "per_az" else self.availability_zones[:1]
        nat_gateways = []
        for index, zone in enumerate(nat_zones):
            address = aws.ec2.Eip(
                f"{name}-nat-{zone}", domain="vpc", tags={"Name": f"{name}-nat-{zone}"}, opts=vpc_child
            )
            nat_gateways.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{zone}",
                    allocation_id=address.id,
                    subnet_id=public_subnets[index].id,
                    tags={"Name": f"{name}-nat-{zone}"},
                    opts=pulumi.ResourceOptions(parent=vpc, depends_on=[internet_gateway]),
                )
            )

        private_route_tables = []
        for index, zone in enumerate(self.availability_zones):
            nat = nat_gateways[index if config.nat_gateways == "per_az" else 0]
            route_table = aws.ec2.RouteTable(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                tags={"Name": f"{name}-private-{zone}"},
                opts=vpc_child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}",
                subnet_id=private_subnets[index].id,
                route_table_id=route_table.id,
                opts=pulumi.ResourceOptions(parent=private_subnets[index]),
            )
            private_route_tables.append(route_table)

        # Model weights stream from S3 through this endpoint: faster than NAT and free of NAT data charges.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in private_route_tables],
            tags={"Name": f"{name}-s3"},
            opts=vpc_child,
        )
        endpoint_security_group = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            vpc_id=vpc.id,
            description="HTTPS from inside the VPC to interface endpoints",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "cidr_blocks": [config.vpc_cidr],
                    "description": "HTTPS from the VPC",
                }
            ],
            tags={"Name": f"{name}-endpoints"},
            opts=vpc_child,
        )
        for service in INTERFACE_ENDPOINT_SERVICES:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=self.private_subnet_ids,
                security_group_ids=[endpoint_security_group.id],
                tags={"Name": f"{name}-{service}"},
                opts=vpc_child,
            )

        self._flow_logs(name, vpc, config.flow_log_retention_days)

        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
                "availability_zones": self.availability_zones,
            }
        )

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc, retention_days: int) -> None:
        child = pulumi.ResourceOptions(parent=self)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs", name_prefix=f"/vpc/{name}-flow-logs-", retention_in_days=retention_days, opts=child
        )
        role = aws.iam.Role(
            f"{name}-flow-logs", assume_role_policy=iam.service_trust("vpc-flow-logs.amazonaws.com"), opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=iam.document(
                [
                    {
                        "Effect": "Allow",
                        "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                        "Resource": log_group.arn.apply(lambda arn: f"{arn}:*"),
                    }
                ]
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            opts=child,
        )
