"""Container logs to CloudWatch Logs: Fluent Bit on every node, one log group per stack with its retention, and a
Pod Identity role that may only write into that group."""


import pytest
from graph_helpers import pod_identity_grant

from infra.offline import Graph
from stacks.loader import ConfigError, validate

RELEASE = "kubernetes:helm.sh/v3:Release"
# Top-level keys of aws/eks-charts stable/aws-for-fluent-bit/values.yaml at commit 2942cdc (chart 0.2.0).
CHART_KEYS = {
    "global", "image", "imagePullSecrets", "nameOverride", "fullnameOverride", "podSecurityContext",
    "containerSecurityContext", "rbac", "service", "input", "filter", "cloudWatch", "cloudWatchLogs", "firehose",
    "kinesis", "kinesis_streams", "elasticsearch", "s3", "opensearch", "serviceAccount", "resources",
    "updateStrategy", "nodeSelector", "tolerations", "affinity", "annotations", "hostNetwork", "dnsPolicy", "env",
    "volumes", "volumeMounts", "livenessProbe", "readinessProbe", "serviceMonitor",
}


def test_fluent_bit_chart_is_pinned_and_ships_to_the_stacks_log_group(graph: Graph) -> None:
    release = graph.one(RELEASE, "logs").inputs
    assert (release["chart"], release["version"], release["repositoryOpts"]["repo"]) == (
        "aws-for-fluent-bit", "0.2.0", "https://aws.github.io/eks-charts"
    )
    values = release["values"]
    assert set(values) <= CHART_KEYS
    group = graph.one("aws:cloudwatch/logGroup:LogGroup", "logs-containers").inputs
    assert values["cloudWatchLogs"]["logGroupName"] == group["name"] == f"/llm-platform/{graph.stack}/containers"
    assert values["cloudWatchLogs"]["autoCreateGroup"] is False  # the group (and its retention) is ours
    assert values["cloudWatchLogs"]["region"] == graph.config.region
    assert values["tolerations"] == [{"operator": "Exists"}]  # GPU nodes' logs too


def test_fluent_bit_writes_through_pod_identity_into_that_group_only(graph: Graph) -> None:
    statement = pod_identity_grant(graph, "logs", "logs-fluent-bit")
    assert set(statement["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}
    assert all("log-group" in arn for arn in statement["Resource"])


def test_retention_per_stack(dev_graph: Graph, prod_graph: Graph) -> None:
    retention = {g.stack: g.one("aws:cloudwatch/logGroup:LogGroup", "logs-containers").inputs["retentionInDays"]
                 for g in (dev_graph, prod_graph)}
    assert retention == {"dev": 7, "prod": 30}
    assert dev_graph.outputs["containerLogGroup"] == "/llm-platform/dev/containers"


def test_retention_must_be_one_cloudwatch_accepts() -> None:
    with pytest.raises(ConfigError, match=r"addons\.logs\.retentionDays: must be one of 1, 3, 5, 7"):
        validate("dev", {"addons": {"logs": {"retentionDays": 10}}}, "Pulumi.test.yaml")
