"""The way in: the load balancer controller (pinned, Pod Identity) and, with a domain, certificate and WAF."""

from infra.offline import Graph

RELEASE = "kubernetes:helm.sh/v3:Release"


def test_controller_chart_pinned_and_configured_for_the_cluster(graph: Graph) -> None:
    release = graph.one(RELEASE, "edge-lb-controller").inputs
    assert release["chart"] == "aws-load-balancer-controller"  # coordinates: tests/test_upstream_contracts.py
    values = release["values"]
    assert values["clusterName"] == graph.outputs["clusterName"]
    assert values["vpcId"] == graph.outputs["vpcId"]
    assert values["region"] == graph.config.region


def test_controller_replicas_per_stack(dev_graph: Graph, prod_graph: Graph) -> None:
    assert dev_graph.one(RELEASE, "edge-lb-controller").inputs["values"]["replicaCount"] == 1
    assert prod_graph.one(RELEASE, "edge-lb-controller").inputs["values"]["replicaCount"] == 2


def test_controller_gets_its_role_through_pod_identity(graph: Graph) -> None:
    association = graph.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "edge-lb-controller").inputs
    release = graph.one(RELEASE, "edge-lb-controller").inputs
    assert association["namespace"] == release["namespace"] == "kube-system"
    assert association["serviceAccount"] == release["values"]["serviceAccount"]["name"]
    assert association["roleArn"] == graph.outputs["loadBalancerControllerRoleArn"]


def test_no_certificate_or_waf_without_a_domain(dev_graph: Graph) -> None:
    assert dev_graph.of_type("aws:acm/certificate:Certificate") == []
    assert dev_graph.of_type("aws:wafv2/webAcl:WebAcl") == []
    assert dev_graph.outputs["certificateArn"] is None


def test_domain_gets_a_dns_validated_certificate_and_a_rate_limit(prod_graph: Graph) -> None:
    certificate = prod_graph.one("aws:acm/certificate:Certificate").inputs
    assert certificate["domainName"] == "llm.example.com"
    assert certificate["validationMethod"] == "DNS"
    acl = prod_graph.one("aws:wafv2/webAcl:WebAcl").inputs
    assert acl["scope"] == "REGIONAL"
    (rule,) = acl["rules"]
    assert rule["action"] == {"block": {}}
    assert rule["statement"]["rateBasedStatement"] == {
        "limit": 2000, "aggregateKeyType": "IP", "evaluationWindowSec": 300
    }
    assert prod_graph.outputs["webAclArn"].startswith("arn:aws:wafv2:")
