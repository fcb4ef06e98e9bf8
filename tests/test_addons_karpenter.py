"""Karpenter: pinned charts, least-privilege controller IAM through Pod Identity, node role joining the cluster,
and the interruption queue fed by the reference template's EventBridge event types."""

import json

from components.karpenter import INTERRUPTION_EVENTS, KARPENTER_NAMESPACE
from infra.offline import Graph

RELEASE = "kubernetes:helm.sh/v3:Release"


def controller_statements(graph: Graph) -> dict[str, dict]:
    policy = json.loads(graph.one("aws:iam/rolePolicy:RolePolicy", "karpenter-controller").inputs["policy"])
    return {statement["Sid"]: statement for statement in policy["Statement"]}


def test_charts_pinned_crds_first_and_configured_for_the_cluster(graph: Graph) -> None:
    crds = graph.one(RELEASE, "karpenter-crd").inputs
    controller = graph.one(RELEASE, "karpenter").inputs
    # Chart coordinates: tests/test_upstream_contracts.py holds them to the recorded upstream facts.
    assert crds["version"] == controller["version"]
    assert controller["skipCrds"] is True
    settings = controller["values"]["settings"]
    assert settings["clusterName"] == graph.outputs["clusterName"]
    assert settings["interruptionQueue"] == graph.outputs["karpenterInterruptionQueue"]
    assert controller["values"]["nodeSelector"] == {"llm-platform/node-role": "system"}


def test_controller_replicas_per_stack(dev_graph: Graph, prod_graph: Graph) -> None:
    assert dev_graph.one(RELEASE, "karpenter").inputs["values"]["replicas"] == 1
    assert prod_graph.one(RELEASE, "karpenter").inputs["values"]["replicas"] == 2


def test_controller_role_comes_through_pod_identity(graph: Graph) -> None:
    association = graph.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "karpenter-controller").inputs
    values = graph.one(RELEASE, "karpenter").inputs["values"]
    assert association["namespace"] == KARPENTER_NAMESPACE
    assert association["serviceAccount"] == values["serviceAccount"]["name"]
    assert association["roleArn"] == graph.outputs["karpenterControllerRoleArn"]


def test_ec2_writes_are_scoped_by_cluster_and_nodepool_tags(graph: Graph) -> None:
    statements = controller_statements(graph)
    owned = f"kubernetes.io/cluster/{graph.outputs['clusterName']}"
    for sid in ("AllowScopedEC2InstanceActionsWithTags", "AllowScopedResourceCreationTagging"):
        condition = statements[sid]["Condition"]
        assert condition["StringEquals"][f"aws:RequestTag/{owned}"] == "owned"
        assert condition["StringLike"] == {"aws:RequestTag/karpenter.sh/nodepool": "*"}
    deletion = statements["AllowScopedDeletion"]
    assert set(deletion["Action"]) == {"ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"}
    assert deletion["Condition"]["StringEquals"] == {f"aws:ResourceTag/{owned}": "owned"}
    unscoped = [s["Sid"] for s in statements.values() if s["Resource"] == "*" and "Condition" not in s]
    assert unscoped == ["AllowPricingReadActions", "AllowUnscopedInstanceProfileListAction"]


def test_pass_role_only_for_the_node_role_and_only_to_ec2(graph: Graph) -> None:
    (pass_role,) = [s for s in controller_statements(graph).values() if "iam:PassRole" in s["Action"]]
    assert pass_role["Resource"] == graph.outputs["karpenterNodeRoleArn"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


def test_queue_actions_only_on_its_own_queue(graph: Graph) -> None:
    statement = controller_statements(graph)["AllowInterruptionQueueActions"]
    assert statement["Resource"].endswith(f":{graph.outputs['karpenterInterruptionQueue']}")
    assert statement["Resource"].startswith("arn:aws:sqs:")


def test_node_role_has_the_worker_policies_and_an_ec2_linux_access_entry(graph: Graph) -> None:
    attached = {
        r.inputs["policyArn"].rsplit("/", 1)[-1]
        for r in graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.name.startswith("karpenter-node-")
    }
    assert attached == {
        "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryPullOnly",
        "AmazonSSMManagedInstanceCore",
    }
    entry = graph.one("aws:eks/accessEntry:AccessEntry", "karpenter-node").inputs
    assert entry["type"] == "EC2_LINUX"
    assert entry["principalArn"] == graph.outputs["karpenterNodeRoleArn"]


def test_queue_is_encrypted_and_only_eventbridge_may_send(graph: Graph) -> None:
    queue = graph.one("aws:sqs/queue:Queue", "karpenter-interruptions").inputs
    assert queue["sqsManagedSseEnabled"] is True
    policy = json.loads(graph.one("aws:sqs/queuePolicy:QueuePolicy").inputs["policy"])
    (allow,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]}
    assert allow["Action"] == "sqs:SendMessage"


def test_eventbridge_rules_cover_the_interruption_events(graph: Graph) -> None:
    rules = {r.name: json.loads(r.inputs["eventPattern"]) for r in graph.of_type("aws:cloudwatch/eventRule:EventRule")}
    detail_types = {pattern["detail-type"][0] for pattern in rules.values()}
    assert detail_types == {
        "AWS Health Event", "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation", "EC2 Instance State-change Notification",
        "EC2 Capacity Reservation Instance Interruption Warning",
    }
    queue_arn = controller_statements(graph)["AllowInterruptionQueueActions"]["Resource"]
    targets = {r.name: r.inputs for r in graph.of_type("aws:cloudwatch/eventTarget:EventTarget")}
    assert set(targets) == {f"karpenter-{event}" for event in INTERRUPTION_EVENTS}
    assert {target["arn"] for target in targets.values()} == {queue_arn}


def test_stack_outputs_name_queue_and_roles(graph: Graph) -> None:
    assert graph.outputs["karpenterControllerRoleArn"].startswith("arn:aws:iam::")
    assert graph.outputs["karpenterNodeRoleArn"].startswith("arn:aws:iam::")
    assert graph.outputs["karpenterInterruptionQueue"]
