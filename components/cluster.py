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
from components.versions import SUPPORTED_KUBERNETES_VERSIONS

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


@dataclass(frozen=True)
class ClusterArgs:
    config: ClusterConfig
    cluster_name: str
    kubernetes_version: str
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
            public_access_cidrs=config.public_access_cidrs if config.public_endpoint else None,
            enabled_cluster_log_types=list(config.log_types),
            encryption_config_key_arn=secrets_key.arn,
            authentication_mode=eks.AuthenticationMode.API,
            access_entries={
                f"admin-{index}": eks.AccessEntryArgs(
                    principal_arn=arn,
                    access_policies={
                        "cluster-admin": eks.AccessPolicyAssociationArgs(
                            policy_arn=CLUSTER_ADMIN_POLICY,
                            access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                        )
                    },
                )
                for index, arn in enumerate(config.admin_principal_arns)
            },
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
