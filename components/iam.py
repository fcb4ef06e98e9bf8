"""IAM as data, and the two kinds of role the platform creates from it: roles of EC2 nodes and roles of pods
(EKS Pod Identity). Every role gets its trust and permissions from here."""

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

Statement = dict[str, Any]

POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
# What every EKS worker node needs: join the cluster, run the VPC CNI, pull from ECR, be reachable by SSM.
NODE_MANAGED_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
)


def document(statements: list[Statement]) -> pulumi.Output[str]:
    """A policy document; statements may hold Outputs (ARNs of resources not yet created)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def service_trust(service: str) -> str:
    """Trust policy letting one AWS service principal assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def pod_identity_trust() -> str:
    """Trust policy for EKS Pod Identity: the agent assumes the role and tags the session with the pod's
    namespace and service account, so the association (not the trust policy) picks which pods get it."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": POD_IDENTITY_SERVICE},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
    )


def managed_policy_arn(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"


def node_role(
    name: str, parent: pulumi.Resource, description: str | None = None
) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
    """A role for EKS worker nodes with the managed policies they need; nodes must not launch before the
    attachments exist, so they are returned for `depends_on`."""
    role = aws.iam.Role(
        name,
        description=description,
        assume_role_policy=service_trust("ec2.amazonaws.com"),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    attachments = [
        aws.iam.RolePolicyAttachment(
            f"{name}-{policy}",
            role=role.name,
            policy_arn=managed_policy_arn(policy),
            opts=pulumi.ResourceOptions(parent=role),
        )
        for policy in NODE_MANAGED_POLICIES
    ]
    return role, attachments


@dataclass(frozen=True)
class PodRole:
    role: aws.iam.Role
    # The inline policy and the Pod Identity association: pods get working credentials only after both exist.
    grants: list[pulumi.Resource]


def pod_identity_role(
    name: str,
    description: str,
    policy: pulumi.Input[str],
    cluster_name: pulumi.Input[str],
    namespace: str,
    service_account: str,
    parent: pulumi.Resource,
) -> PodRole:
    """A role with an inline `policy`, assumed by the pods of one service account through EKS Pod Identity."""
    role = aws.iam.Role(
        name,
        description=description,
        assume_role_policy=pod_identity_trust(),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    in_role = pulumi.ResourceOptions(parent=role)
    inline = aws.iam.RolePolicy(name, role=role.id, policy=policy, opts=in_role)
    association = aws.eks.PodIdentityAssociation(
        name,
        cluster_name=cluster_name,
        namespace=namespace,
        service_account=service_account,
        role_arn=role.arn,
        opts=in_role,
    )
    return PodRole(role, [inline, association])
