"""Karpenter: the controller (pinned charts, CRDs first), its tag-scoped IAM through Pod Identity, the role of
the nodes it launches with their EKS access entry, and the SQS queue EventBridge fills with interruptions."""

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import iam
from components.cluster import SYSTEM_NODE_LABEL
from components.helm import pinned_release
from components.versions import KARPENTER, KARPENTER_CRD

KARPENTER_NAMESPACE = "kube-system"
KARPENTER_SERVICE_ACCOUNT = "karpenter"
# Karpenter tags what it launches with these; the controller policy only touches resources that carry them.
NODEPOOL_TAG = "karpenter.sh/nodepool"
NODECLASS_TAG = "karpenter.k8s.aws/ec2nodeclass"
CLUSTER_NAME_TAG = "eks:eks-cluster-name"

# EventBridge events Karpenter reacts to by draining the node before EC2 takes it away.
INTERRUPTION_EVENTS: dict[str, dict[str, list[str]]] = {
    "health": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "capacity-reservation": {
        "source": ["aws.ec2"], "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"]
    },
}
# Karpenter acts within seconds; older messages describe nodes already gone.
QUEUE_RETENTION_S = 300


def controller_policy(
    cluster_name: str, region: str, account_id: str, queue_arn: str, node_role_arn: str
) -> list[iam.Statement]:
    """The controller's permissions: the reference policy of the pinned version (aws/karpenter-provider-aws
    getting-started cloudformation.yaml, recorded in components/upstream/) statement by statement, with EC2
    create/tag/delete only on resources tagged for this cluster and a node pool, and PassRole only on the node
    role and only to EC2 (the reference also allows the China partition's EC2 principal)."""
    ec2 = f"arn:aws:ec2:{region}:*"
    cluster_arn = f"arn:aws:eks:{region}:{account_id}:cluster/{cluster_name}"
    owned = f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}"
    owned_resource = f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}"
    launched = [f"{ec2}:{kind}/*" for kind in (
        "fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request"
    )]
    request_scoped = {
        "StringEquals": {owned: "owned", f"aws:RequestTag/{CLUSTER_NAME_TAG}": cluster_name},
        "StringLike": {f"aws:RequestTag/{NODEPOOL_TAG}": "*"},
    }
    profile_request_scoped = {
        "StringEquals": {
            owned: "owned",
            f"aws:RequestTag/{CLUSTER_NAME_TAG}": cluster_name,
            "aws:RequestTag/topology.kubernetes.io/region": region,
        },
        "StringLike": {f"aws:RequestTag/{NODECLASS_TAG}": "*"},
    }
    profile_resource_scoped = {
        "StringEquals": {owned_resource: "owned", "aws:ResourceTag/topology.kubernetes.io/region": region},
        "StringLike": {f"aws:ResourceTag/{NODECLASS_TAG}": "*"},
    }
    return [
        {
            "Sid": "AllowScopedEC2InstanceAccessActions",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
            "Resource": [
                f"arn:aws:ec2:{region}::image/*",
                f"arn:aws:ec2:{region}::snapshot/*",
                f"{ec2}:security-group/*",
                f"{ec2}:subnet/*",
                f"{ec2}:capacity-reservation/*",
                f"{ec2}:placement-group/*",
            ],
        },
        {
            "Sid": "AllowScopedEC2LaunchTemplateAccessActions",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
            "Resource": f"{ec2}:launch-template/*",
            "Condition": {
                "StringEquals": {owned_resource: "owned"},
                "StringLike": {f"aws:ResourceTag/{NODEPOOL_TAG}": "*"},
            },
        },
        {
            "Sid": "AllowScopedEC2InstanceActionsWithTags",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
            "Resource": launched,
            "Condition": request_scoped,
        },
        {
            "Sid": "AllowScopedResourceCreationTagging",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": launched,
            "Condition": {
                **request_scoped,
                "StringEquals": {
                    **request_scoped["StringEquals"],
                    "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                },
            },
        },
        {
            "Sid": "AllowScopedResourceTagging",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": f"{ec2}:instance/*",
            "Condition": {
                "StringEquals": {owned_resource: "owned"},
                "StringLike": {f"aws:ResourceTag/{NODEPOOL_TAG}": "*"},
                "StringEqualsIfExists": {f"aws:RequestTag/{CLUSTER_NAME_TAG}": cluster_name},
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": [CLUSTER_NAME_TAG, "karpenter.sh/nodeclaim", "Name"]
                },
            },
        },
        {
            "Sid": "AllowScopedDeletion",
            "Effect": "Allow",
            "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
            "Resource": [f"{ec2}:instance/*", f"{ec2}:launch-template/*"],
            "Condition": {
                "StringEquals": {owned_resource: "owned"},
                "StringLike": {f"aws:ResourceTag/{NODEPOOL_TAG}": "*"},
            },
        },
        {
            "Sid": "AllowRegionalReadActions",
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeCapacityReservations", "ec2:DescribeImages", "ec2:DescribeInstances",
                # Instance status feeds Karpenter's node health checks (repair of unhealthy nodes).
                "ec2:DescribeInstanceStatus", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplates", "ec2:DescribePlacementGroups", "ec2:DescribeSecurityGroups",
                "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets",
            ],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
        },
        {
            "Sid": "AllowSSMReadActions",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": f"arn:aws:ssm:{region}::parameter/aws/service/*",
        },
        {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Action": "pricing:GetProducts", "Resource": "*"},
        {
            "Sid": "AllowInterruptionQueueActions",
            "Effect": "Allow",
            "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
            "Resource": queue_arn,
        },
        {
            "Sid": "AllowPassingInstanceRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": node_role_arn,
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        },
        {
            "Sid": "AllowScopedInstanceProfileCreationActions",
            "Effect": "Allow",
            "Action": ["iam:CreateInstanceProfile"],
            "Resource": f"arn:aws:iam::{account_id}:instance-profile/*",
            "Condition": profile_request_scoped,
        },
        {
            "Sid": "AllowScopedInstanceProfileTagActions",
            "Effect": "Allow",
            "Action": ["iam:TagInstanceProfile"],
            "Resource": f"arn:aws:iam::{account_id}:instance-profile/*",
            "Condition": {
                "StringEquals": {**profile_resource_scoped["StringEquals"], **profile_request_scoped["StringEquals"]},
                "StringLike": {**profile_resource_scoped["StringLike"], **profile_request_scoped["StringLike"]},
            },
        },
        {
            "Sid": "AllowScopedInstanceProfileActions",
            "Effect": "Allow",
            "Action": [
                "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"
            ],
            "Resource": f"arn:aws:iam::{account_id}:instance-profile/*",
            "Condition": profile_resource_scoped,
        },
        {
            "Sid": "AllowInstanceProfileReadActions",
            "Effect": "Allow",
            "Action": "iam:GetInstanceProfile",
            "Resource": f"arn:aws:iam::{account_id}:instance-profile/*",
        },
        {
            # The instance-profile garbage collector lists them all; IAM List calls take no resource scope.
            "Sid": "AllowUnscopedInstanceProfileListAction",
            "Effect": "Allow",
            "Action": "iam:ListInstanceProfiles",
            "Resource": "*",
        },
        {
            "Sid": "AllowAPIServerEndpointDiscovery",
            "Effect": "Allow",
            "Action": "eks:DescribeCluster",
            "Resource": cluster_arn,
        },
        {
            # Karpenter avoids zones the cluster has been shifted away from (ARC zonal shift).
            "Sid": "AllowZonalShiftStatusReadOnly",
            "Effect": "Allow",
            "Action": ["arc-zonal-shift:GetManagedResource"],
            "Resource": "*",
            "Condition": {"StringEquals": {"arc-zonal-shift:ResourceIdentifier": cluster_arn}},
        },
    ]


def queue_policy(queue_arn: str) -> list[iam.Statement]:
    return [
        {
            "Sid": "AllowEventBridge",
            "Effect": "Allow",
            "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
        },
        {
            "Sid": "DenyHTTP",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sqs:*",
            "Resource": queue_arn,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ]


@dataclass(frozen=True)
class KarpenterArgs:
    cluster_name: pulumi.Input[str]
    region: str
    account_id: pulumi.Input[str]
    controller_replicas: int
    kubernetes_provider: k8s.Provider
    # The system node group and the Pod Identity agent: what its pods need to run and get AWS credentials.
    system_ready: list[pulumi.Resource]


class Karpenter(pulumi.ComponentResource):
    node_role_arn: pulumi.Output[str]
    node_role_name: pulumi.Output[str]
    controller_role_arn: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    crds: k8s.helm.v3.Release
    controller: k8s.helm.v3.Release

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Karpenter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        node_role, node_attachments = iam.node_role(
            f"{name}-node", self, description="Nodes Karpenter launches (GPU and CPU pools)"
        )
        # Lets nodes with this role join the cluster (API authentication mode has no aws-auth ConfigMap).
        access_entry = aws.eks.AccessEntry(
            f"{name}-node",
            cluster_name=args.cluster_name,
            principal_arn=node_role.arn,
            type="EC2_LINUX",
            opts=pulumi.ResourceOptions(parent=node_role),
        )

        queue = aws.sqs.Queue(
            f"{name}-interruptions",
            message_retention_seconds=QUEUE_RETENTION_S,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        queue_child = pulumi.ResourceOptions(parent=queue)
        queue_access = aws.sqs.QueuePolicy(
            f"{name}-interruptions",
            queue_url=queue.url,
            policy=queue.arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": queue_policy(arn)})),
            opts=queue_child,
        )
        targets = []
        for event, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{event}",
                description=f"Karpenter interruption handling: {pattern['detail-type'][0]}",
                event_pattern=json.dumps(pattern),
                opts=queue_child,
            )
            targets.append(
                aws.cloudwatch.EventTarget(
                    f"{name}-{event}",
                    rule=rule.name,
                    arn=queue.arn,
                    opts=pulumi.ResourceOptions(parent=rule, depends_on=[queue_access]),
                )
            )

        controller = iam.pod_identity_role(
            f"{name}-controller",
            "Karpenter controller (EKS Pod Identity)",
            pulumi.Output.all(args.cluster_name, args.account_id, queue.arn, node_role.arn).apply(
                lambda values: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": controller_policy(values[0], args.region, values[1], values[2], values[3]),
                    }
                )
            ),
            args.cluster_name,
            KARPENTER_NAMESPACE,
            KARPENTER_SERVICE_ACCOUNT,
            self,
        )

        on_cluster = pulumi.ResourceOptions(
            parent=self, provider=args.kubernetes_provider, depends_on=args.system_ready
        )
        # CRDs only: nothing to schedule, Helm's usual 300 s is plenty.
        self.crds = pinned_release(f"{name}-crd", KARPENTER_CRD, KARPENTER_NAMESPACE, {}, on_cluster, timeout_s=300)
        self.controller = pinned_release(
            name,
            KARPENTER,
            KARPENTER_NAMESPACE,
            {
                "settings": {"clusterName": args.cluster_name, "interruptionQueue": queue.name},
                "serviceAccount": {"create": True, "name": KARPENTER_SERVICE_ACCOUNT},
                "replicas": args.controller_replicas,
                # Karpenter must not run on nodes it manages: it would evict itself.
                "nodeSelector": SYSTEM_NODE_LABEL,
                "controller": {
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "512Mi"},
                        "limits": {"cpu": "1", "memory": "1Gi"},
                    }
                },
            },
            pulumi.ResourceOptions.merge(
                on_cluster,
                pulumi.ResourceOptions(
                    depends_on=[self.crds, *controller.grants, access_entry, *node_attachments, *targets]
                ),
            ),
            # The controller pods pull their image onto the system nodes and must pass their readiness probes.
            timeout_s=600,
            # The karpenter-crd release owns the CRDs, so upgrades update them (Helm never upgrades crds/).
            skip_crds=True,
        )

        self.node_role_arn = node_role.arn
        self.node_role_name = node_role.name
        self.controller_role_arn = controller.role.arn
        self.queue_name = queue.name
        self.register_outputs(
            {
                "node_role_arn": self.node_role_arn,
                "node_role_name": self.node_role_name,
                "controller_role_arn": self.controller_role_arn,
                "queue_name": self.queue_name,
            }
        )
