"""Container logs to CloudWatch Logs: AWS for Fluent Bit on every node (its `cloudWatchLogs` output, the
cloudwatch_logs plugin) into one log group per stack with a retention from config, written through a Pod
Identity role that may only put events into that group.

Chart facts: aws/eks-charts stable/aws-for-fluent-bit at commit 2942cdc (chart 0.2.0): values cloudWatchLogs.*
(enabled by default), serviceAccount.name (default: the release's full name), tolerations, resources.
Cost: CloudWatch Logs ingestion is about $0.50 per GB and storage $0.03 per GB-month (us-west-2)."""

from dataclasses import dataclass
from typing import Annotated, Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import AfterValidator, Field

from components import iam
from components.config_base import StrictModel
from components.helm import pinned_release
from components.versions import AWS_FOR_FLUENT_BIT

LOG_NAMESPACE = "kube-system"
FLUENT_BIT_SERVICE_ACCOUNT = AWS_FOR_FLUENT_BIT.name
# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy API).
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                  3288, 3653)


def _retention(days: int) -> int:
    if days not in RETENTION_DAYS:
        raise ValueError(f"must be one of {', '.join(map(str, RETENTION_DAYS))}")
    return days


class LogsConfig(StrictModel):
    enabled: bool = Field(default=True, description="Ship container logs to CloudWatch Logs.")
    retention_days: Annotated[int, AfterValidator(_retention)] = Field(default=7, description="Days kept.")


def writer_policy(log_group_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    return iam.document([
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [log_group_arn, pulumi.Output.concat(log_group_arn, ":*")],
        }
    ])


def fluent_bit_values(log_group: pulumi.Input[str], region: str) -> dict[str, Any]:
    return {
        "cloudWatchLogs": {"enabled": True, "region": region, "logGroupName": log_group, "autoCreateGroup": False},
        "serviceAccount": {"create": True, "name": FLUENT_BIT_SERVICE_ACCOUNT},
        # Every node's logs, the tainted GPU nodes' included.
        "tolerations": [{"operator": "Exists"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "250Mi"}},
    }


@dataclass(frozen=True)
class LogShippingArgs:
    config: LogsConfig
    log_group_name: str
    region: str
    cluster_name: pulumi.Input[str]
    kubernetes_provider: k8s.Provider
    # The system node group and the Pod Identity agent: Fluent Bit needs AWS credentials from its first start.
    system_ready: list[pulumi.Resource]


class LogShipping(pulumi.ComponentResource):
    log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: LogShippingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:LogShipping", name, None, opts)
        group = aws.cloudwatch.LogGroup(
            f"{name}-containers",
            name=args.log_group_name,
            retention_in_days=args.config.retention_days,
            opts=pulumi.ResourceOptions(parent=self),
        )
        writer = iam.pod_identity_role(
            f"{name}-fluent-bit",
            "Fluent Bit: put container logs into the stack's log group",
            writer_policy(group.arn),
            args.cluster_name,
            LOG_NAMESPACE,
            FLUENT_BIT_SERVICE_ACCOUNT,
            self,
        )
        pinned_release(
            name,
            AWS_FOR_FLUENT_BIT,
            LOG_NAMESPACE,
            fluent_bit_values(group.name, args.region),
            pulumi.ResourceOptions(
                parent=self, provider=args.kubernetes_provider, depends_on=[*writer.grants, *args.system_ready]
            ),
            timeout_s=600,
        )
        self.log_group_name = group.name
        self.register_outputs({"log_group_name": self.log_group_name})
