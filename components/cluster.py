"""The EKS control plane, its system node group, and the Kubernetes provider every workload deploys through."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, Self, get_args

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s
from pydantic import BeforeValidator, Field, model_validator

from components import iam
from components.config_base import Cidr, InstanceType, StrictModel
from components.versions import KUBERNETES_VERSION, SUPPORTED_KUBERNETES_VERSIONS

CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
SYSTEM_NODE_LABEL = {"llm-platform/node-role": "system"}
IAM_PRINCIPAL_PATTERN = r"^arn:aws(-[a-z]+)?:iam::\d{12}:(role|user)/[\w+=,.@/-]+$"
ClusterLogType = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
# YAML reads an unquoted 1.34 as a float; a version is a string.
KubernetesVersion = Annotated[
    Literal[SUPPORTED_KUBERNETES_VERSIONS],  # type: ignore[valid-type]
    BeforeValidator(lambda value: str(value) if isinstance(value, float) else value),
]


class NodeGroupConfig(StrictModel):
    instance_types: list[InstanceType] = Field(default_factory=lambda: ["m6i.large"], min_length=1)
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
        return self


class ClusterConfig(StrictModel):
    name: str | None = Field(
        default=None, pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,99}$", description="Default: llm-<stack>."
    )
    kubernetes_version: KubernetesVersion | None = Field(
        default=None, description="Default: the version pinned in components/versions.py."
    )
    public_endpoint: bool = True
    public_access_cidrs: list[Cidr] = Field(
        default_factory=list, description="Who reaches the public endpoint: your deployers' egress CIDRs."
    )
    private_access_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="Networks routed into the VPC (VPN, peering, a runner's VPC) given 443 on the private endpoint.",
    )
    log_types: list[ClusterLogType] = Field(default_factory=lambda: list(get_args(ClusterLogType)))
    admin_principal_arns: list[Annotated[str, Field(pattern=IAM_PRINCIPAL_PATTERN)]] = Field(default_factory=list)
    system_nodes: NodeGroupConfig = Field(default_factory=NodeGroupConfig)

    @property
    def version(self) -> str:
        """The Kubernetes version the cluster and its nodes run."""
        return self.kubernetes_version or KUBERNETES_VERSION

    @model_validator(mode="after")
    def api_server_reachable_and_restricted(self) -> Self:
        if self.public_endpoint and not self.public_access_cidrs:
            raise ValueError(
                "publicEndpoint is true but publicAccessCidrs is empty; list the CIDRs your deploys come from "
                "(office, VPN or CI runner egress), or set publicEndpoint: false with privateAccessCidrs"
            )
        if not self.public_endpoint and not self.private_access_cidrs:
            # `pulumi up` itself talks to the API server (Helm releases, manifests): on a VPC the same run
            # creates, a private-only endpoint has nobody inside to reach it.
            raise ValueError(
                "publicEndpoint is false and privateAccessCidrs is empty, so nothing can reach the API server "
                "and `pulumi up` cannot install anything in the cluster; for the first deploy set "
                "publicEndpoint: true with publicAccessCidrs (your deployers' egress CIDRs), and once a VPN or "
                "peered network reaches the VPC list its CIDRs in privateAccessCidrs (docs/deploy.md)"
            )
        for key, cidrs in (("publicAccessCidrs", self.public_access_cidrs),
                           ("privateAccessCidrs", self.private_access_cidrs)):
            if "0.0.0.0/0" in cidrs:
                raise ValueError(f"{key} must not contain 0.0.0.0/0; restrict it to your office/VPN CIDRs")
        return self


def principal_identity(arn: str) -> tuple[str, str, str, str] | None:
    """(partition, account, role|user, name) of an IAM principal, or of the STS session of a role.

    The session `arn:aws:sts::ACCT:assumed-role/NAME/SESSION` is the role `arn:aws:iam::ACCT:role/PATH/NAME`: the
    session ARN carries no role path, and a role or user name is unique in its account whatever its path, so the
    name identifies the principal."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    _, partition, service, _, account, resource = parts
    kind, _, rest = resource.partition("/")
    segments = rest.split("/")
    if service == "sts" and kind == "assumed-role" and len(segments) == 2:
        return partition, account, "role", segments[0]
    if service == "iam" and kind in ("role", "user") and segments[-1]:
        return partition, account, kind, segments[-1]
    return None


def admin_access_principals(admin_arns: Sequence[str], deployer_arn: str) -> tuple[list[str], list[str]]:
    """Split `adminPrincipalArns` into those that get an access entry and the deploying identity itself, which
    EKS already made cluster admin when pulumi-eks created the cluster (bootstrapClusterCreatorAdminPermissions
    is always true there, pulumi-eks nodejs/eks/cluster/cluster.ts); a second entry for it fails with
    ResourceInUseException (pulumi/pulumi-eks#2373)."""
    deployer = principal_identity(deployer_arn)
    granted = [arn for arn in admin_arns if deployer is None or principal_identity(arn) != deployer]
    return granted, [arn for arn in admin_arns if arn not in granted]


@dataclass(frozen=True)
class ClusterArgs:
    config: ClusterConfig
    cluster_name: str
    kubernetes_version: str
    # Who runs this deploy (sts:GetCallerIdentity); EKS makes it cluster admin on creation.
    deployer_arn: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    key_deletion_window_days: int = 30
    # Refuse to delete the secrets key (prod): losing it makes every Kubernetes secret unreadable.
    protect: bool = False


class Cluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    provider: k8s.Provider
    # Created once its nodes have joined (EKS reports a managed node group ACTIVE only then).
    system_nodes: aws.eks.NodeGroup
    # The system nodes and the Pod Identity agent: Helm releases wait for both, so their pods can schedule and get
    # AWS credentials at start, and on destroy both outlive every release.
    system_ready: list[pulumi.Resource]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Cluster", name, None, opts)
        config = args.config
        child = pulumi.ResourceOptions(parent=self)

        secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes secrets in {args.cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=args.key_deletion_window_days,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        aws.kms.Alias(
            f"{name}-secrets",
            name=f"alias/{args.cluster_name}-secrets",
            target_key_id=secrets_key.key_id,
            opts=pulumi.ResourceOptions(parent=secrets_key),
        )

        cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            vpc_id=args.vpc_id,
            public_subnet_ids=args.public_subnet_ids,
            private_subnet_ids=args.private_subnet_ids,
            node_associate_public_ip_address=False,
            endpoint_private_access=True,
            endpoint_public_access=config.public_endpoint,
            # pulumi-eks refuses publicAccessCidrs with the public endpoint off, and waits for /healthz (from
            # where `pulumi up` runs) only with it on (nodejs/eks/cluster/cluster.ts).
            public_access_cidrs=config.public_access_cidrs if config.public_endpoint else None,
            enabled_cluster_log_types=list(config.log_types),
            encryption_config_key_arn=secrets_key.arn,
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=self._admin_access_entries(config.admin_principal_arns, args.deployer_arn),
            # NetworkPolicy objects are only enforced once the VPC CNI's network policy agent is on
            # (https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy-configure.html); pulumi-eks
            # writes this as `enableNetworkPolicy: "true"` into the vpc-cni addon's configurationValues
            # (pulumi-eks nodejs/eks/addons/cni-addon.ts, mergeConfigurationValues).
            vpc_cni_options=eks.VpcCniOptionsArgs(enable_network_policy=True),
            skip_default_node_group=True,
            # The EKS-created cluster security group then guards both managed and Karpenter nodes.
            skip_default_security_groups=True,
            create_oidc_provider=True,
            opts=child,
        )
        # pulumi-eks exposes the name only on its inner aws.eks.Cluster; this carries the configured name with
        # a dependency on the cluster, so what uses it waits for the control plane.
        self.cluster_name = cluster.urn.apply(lambda _: args.cluster_name)
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig_json)
        self.oidc_issuer = cluster.oidc_issuer
        self.cluster_security_group_id = cluster.cluster_security_group_id
        cluster_child = pulumi.ResourceOptions(parent=cluster)

        self._private_endpoint_access(name, config.private_access_cidrs, cluster_child)
        # Karpenter finds the security group for the nodes it launches by this tag.
        aws.ec2.Tag(
            f"{name}-karpenter-discovery",
            resource_id=cluster.cluster_security_group_id,
            key="karpenter.sh/discovery",
            value=args.cluster_name,
            opts=cluster_child,
        )
        pod_identity_agent = aws.eks.Addon(
            f"{name}-pod-identity-agent",
            cluster_name=self.cluster_name,
            addon_name="eks-pod-identity-agent",
            resolve_conflicts_on_update="OVERWRITE",
            opts=cluster_child,
        )

        node_role, attachments = iam.node_role(f"{name}-system-nodes", self)
        self.node_role_arn = node_role.arn
        nodes = config.system_nodes
        launch_template = aws.ec2.LaunchTemplate(
            f"{name}-system-nodes",
            description="System node group: encrypted gp3 root volume, IMDSv2 only",
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {
                        "volume_size": nodes.disk_size_gib,
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            # Hop limit 1 keeps pods off the node's credentials; they get their own through Pod Identity.
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            opts=child,
        )
        self.system_nodes = aws.eks.NodeGroup(
            f"{name}-system",
            cluster_name=self.cluster_name,
            node_role_arn=node_role.arn,
            subnet_ids=args.private_subnet_ids,
            capacity_type="ON_DEMAND",
            instance_types=nodes.instance_types,
            # Set, the node group follows a control-plane upgrade in the same `pulumi up` (after it: it reads the
            # cluster's name); unset, pulumi-aws takes the cluster's version at creation and never compares again.
            version=args.kubernetes_version,
            scaling_config={
                "min_size": nodes.min_size,
                "desired_size": nodes.desired_size,
                "max_size": nodes.max_size,
            },
            update_config={"max_unavailable": 1},
            launch_template={"id": launch_template.id, "version": launch_template.latest_version.apply(str)},
            labels=SYSTEM_NODE_LABEL,
            opts=pulumi.ResourceOptions(
                parent=cluster,
                depends_on=attachments,
                # The autoscaler and operators move desired size; a deploy should not fight them.
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )

        self.system_ready = [self.system_nodes, pod_identity_agent]

        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=cluster_child,
        )

        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "oidc_issuer": self.oidc_issuer,
                "cluster_security_group_id": self.cluster_security_group_id,
                "node_role_arn": self.node_role_arn,
            }
        )

    def _admin_access_entries(self, admin_arns: Sequence[str], deployer_arn: str) -> dict[str, eks.AccessEntryArgs]:
        """Cluster-admin access entries, keyed by position in adminPrincipalArns so that skipping one keeps the
        others' keys (and resources) unchanged."""
        granted, skipped = admin_access_principals(admin_arns, deployer_arn)
        for arn in skipped:
            pulumi.log.warn(
                f"cluster.adminPrincipalArns: {arn} is the identity running this deploy ({deployer_arn}); EKS "
                "gives the identity that creates the cluster an admin access entry of its own, so no second one is "
                "declared (pulumi/pulumi-eks#2373). Run later deploys as the same identity.",
                resource=self,
            )
        return {
            f"admin-{index}": eks.AccessEntryArgs(
                principal_arn=arn,
                access_policies={
                    "cluster-admin": eks.AccessPolicyAssociationArgs(
                        policy_arn=CLUSTER_ADMIN_POLICY,
                        access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                    )
                },
            )
            for index, arn in enumerate(admin_arns)
            if arn in granted
        }

    def _private_endpoint_access(self, name: str, cidrs: Sequence[str], opts: pulumi.ResourceOptions) -> None:
        """The private endpoint answers on the cluster security group: networks routed into the VPC need 443 there
        (https://docs.aws.amazon.com/eks/latest/userguide/cluster-endpoint.html, accessing a private-only API
        server)."""
        for index, cidr in enumerate(cidrs):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-api-from-{index}",
                security_group_id=self.cluster_security_group_id,
                description=f"Kubernetes API (private endpoint) from {cidr}",
                cidr_ipv4=cidr,
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                opts=opts,
            )
