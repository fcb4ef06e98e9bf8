"""The order a real `pulumi up` (and `pulumi destroy`, in reverse) needs, read from the graph's dependencies.

Mocks create everything at once, so nothing here can fail by timing: each test asks whether the engine was told to
wait. The facts they encode are upstream ones: which chart installs which CRD group, that the AWS Load Balancer
Controller's webhooks use `failurePolicy: Fail`, that Helm waits 300 s unless told otherwise.
"""

import json
from typing import Any

from deploy_order import chart_name, release_of, upstream, waits_for

from infra.offline import Graph, GraphResource

RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
# The CRD groups each chart installs (karpenter-crd: karpenter.sh_nodepools, karpenter.k8s.aws_ec2nodeclasses;
# keda: keda.sh_scaledobjects; kube-prometheus-stack: monitoring.coreos.com_* via its crds subchart).
CRD_CHARTS = {
    "karpenter.sh": "karpenter-crd",
    "karpenter.k8s.aws": "karpenter-crd",
    "keda.sh": "keda",
    "monitoring.coreos.com": "kube-prometheus-stack",
}
LB_CONTROLLER_CHART = "aws-load-balancer-controller"
HELM_DEFAULT_TIMEOUT_S = 300
# Charts whose first install starts Deployments on nodes that just joined: several image pulls and webhook
# certificates; Helm's default 300 s is not enough headroom for that.
CHARTS_STARTING_PODS = {"karpenter", "aws-load-balancer-controller", "keda", "kube-prometheus-stack"}
SERVING_NAMESPACE = "llm-serving"
POOL_LABEL = "llm-platform/pool"


def _system_node_group(graph: Graph) -> GraphResource:
    (group,) = [g for g in graph.of_type(NODE_GROUP) if g.inputs.get("labels", {}).get("llm-platform/node-role")
                == "system"]
    return group


def _api_group(resource: GraphResource) -> str | None:
    api_version = resource.inputs.get("apiVersion", "")
    return api_version.split("/")[0] if "/" in api_version else None


def test_custom_resources_wait_for_the_release_that_installs_their_crd(graph: Graph) -> None:
    custom = [r for r in graph.resources if r.type.startswith("kubernetes:") and _api_group(r) in CRD_CHARTS]
    assert {_api_group(r) for r in custom} == set(CRD_CHARTS), "a CRD group this test covers is no longer used"
    for resource in custom:
        release = release_of(graph, CRD_CHARTS[_api_group(resource) or ""])
        assert waits_for(graph, resource, release), f"{resource.urn} does not wait for {release.urn}"


def _load_balanced(graph: Graph) -> list[GraphResource]:
    ingresses = graph.of_type("kubernetes:networking.k8s.io/v1:Ingress")
    services = [s for s in graph.of_type("kubernetes:core/v1:Service") if s.inputs["spec"].get("type")
                == "LoadBalancer"]
    return ingresses + services


def test_ingresses_wait_for_the_load_balancer_controller(graph: Graph) -> None:
    """Its webhooks reject an Ingress (failurePolicy: Fail) until its pods run; on destroy the Ingress goes first,
    while the controller is still there to delete the ALB its finalizer holds."""
    controller = release_of(graph, LB_CONTROLLER_CHART)
    exposed = _load_balanced(graph)
    assert exposed, "no Ingress in the graph"
    for resource in exposed:
        assert waits_for(graph, resource, controller), f"{resource.urn} does not wait for {controller.urn}"


def test_load_balancer_controller_outlives_ingresses_until_the_vpc_goes(graph: Graph) -> None:
    """Destroy order: Ingress, then the controller (with nodes to run on), then the VPC its ALB sat in."""
    controller = release_of(graph, LB_CONTROLLER_CHART)
    assert waits_for(graph, controller, graph.one("aws:ec2/vpc:Vpc"))
    assert waits_for(graph, controller, _system_node_group(graph))


def test_every_release_waits_for_the_system_nodes_and_pod_identity(graph: Graph) -> None:
    nodes = _system_node_group(graph)
    (agent,) = [a for a in graph.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == "eks-pod-identity-agent"]
    for release in graph.of_type(RELEASE):
        assert waits_for(graph, release, nodes), f"{release.urn} may install before any node can run its pods"
        assert waits_for(graph, release, agent), f"{release.urn}'s pods may start before they can get AWS credentials"


def test_every_release_sets_a_timeout_sized_for_it(graph: Graph) -> None:
    for release in graph.of_type(RELEASE):
        timeout = release.inputs.get("timeout")
        assert isinstance(timeout, int) and timeout > 0, f"{release.urn} keeps Helm's default timeout"
        if chart_name(release) in CHARTS_STARTING_PODS:
            assert timeout > HELM_DEFAULT_TIMEOUT_S, f"{release.urn}: {timeout}s leaves no room for image pulls"


def _node_pool(graph: Graph, pool: str) -> GraphResource:
    (match,) = [p for p in graph.of_type(NODE_POOL)
                if p.inputs["spec"]["template"]["metadata"]["labels"].get(POOL_LABEL) == pool]
    return match


def _serving_deployments(graph: Graph) -> list[GraphResource]:
    return [d for d in graph.of_type(DEPLOYMENT) if d.inputs["metadata"]["namespace"] == SERVING_NAMESPACE]


def test_workloads_wait_for_the_node_pool_they_schedule_on(graph: Graph) -> None:
    deployments = _serving_deployments(graph)
    assert {d.inputs["metadata"]["name"] for d in deployments} >= {"vllm", "gateway"}
    for deployment in deployments:
        pool = deployment.inputs["spec"]["template"]["spec"]["nodeSelector"][POOL_LABEL]
        node_pool = _node_pool(graph, pool)
        assert waits_for(graph, deployment, node_pool), f"{deployment.urn} starts before its {pool} pool exists"


def test_vllm_waits_for_the_nvidia_device_plugin(graph: Graph) -> None:
    plugins = [r for r in graph.of_type(RELEASE) if chart_name(r) == "nvidia-device-plugin"]
    vllm = graph.one(DEPLOYMENT, "vllm-deployment")
    for plugin in plugins:
        assert waits_for(graph, vllm, plugin), "vLLM pods would wait for nvidia.com/gpu no node advertises yet"


STATEFUL = ("aws:s3/bucket:Bucket", "aws:kms/key:Key", "aws:elasticache/replicationGroup:ReplicationGroup",
            "aws:dynamodb/table:Table")


def test_prod_protects_its_stateful_resources(prod_graph: Graph) -> None:
    stateful = [r for type_token in STATEFUL for r in prod_graph.of_type(type_token)]
    assert {r.type for r in stateful} >= set(STATEFUL[:3])
    for resource in stateful:
        assert resource.protect, f"{resource.urn} could be deleted by a `pulumi destroy` or a replacement"


def test_dev_protects_nothing_so_it_can_be_destroyed(dev_graph: Graph) -> None:
    assert [r.urn for r in dev_graph.resources if r.protect] == []


def test_graph_json_carries_dependencies_and_options(graph: Graph) -> None:
    document: dict[str, Any] = json.loads(json.dumps(graph.to_json()))
    by_name = {(r["type"], r["name"]): r for r in document["resources"]}
    ingress = by_name[("kubernetes:networking.k8s.io/v1:Ingress", "gateway-ingress")]
    service = graph.one("kubernetes:core/v1:Service", "gateway-service")
    assert service.urn in ingress["propertyDependencies"]["spec"], "the backend Service is an input of the spec"
    assert set(ingress["propertyDependencies"]["spec"]) <= set(ingress["dependencies"])
    provider = graph.one("pulumi:providers:kubernetes")
    assert ingress["options"]["provider"].startswith(provider.urn + "::")
    assert ingress["custom"] is True
    vllm = by_name[(DEPLOYMENT, "vllm-deployment")]
    assert vllm["options"]["ignoreChanges"] == ["spec.replicas"]
    assert set(vllm["options"]["customTimeouts"]) == {"create", "update"}
    account = graph.one("kubernetes:core/v1:ServiceAccount", "vllm-sa")
    assert account.urn in vllm["options"]["dependsOn"], "the explicit depends_on on the service account"
    for resource in document["resources"]:
        assert set(resource["options"]) == {"dependsOn", "protect", "ignoreChanges", "customTimeouts",
                                            "deleteBeforeReplace", "retainOnDelete", "provider"}


def test_depends_on_is_what_no_input_explains() -> None:
    resource = GraphResource(
        urn="urn:x", type="t", name="x", parent=None, custom=True, inputs={},
        dependencies=("urn:a", "urn:b", "urn:c"), property_dependencies={"spec": ("urn:a",), "meta": ("urn:c",)},
    )
    assert resource.depends_on == ("urn:b",)


def test_upstream_follows_parents_and_providers(graph: Graph) -> None:
    """The walk itself: a Kubernetes object waits for its provider, which waits for the EKS cluster."""
    namespace = graph.one("kubernetes:core/v1:Namespace", "serving-namespace")
    assert graph.one("eks:index:Cluster").urn in upstream(graph, namespace)
