"""DNS and TLS of the gateway: a domain comes with a Route 53 hosted zone (the stack validates a certificate and
points the domain at the ALB) or with an issued certificate; the HTTPS listener only ever gets a validated one."""

import json
from pathlib import Path

import pulumi
import pytest

from infra.mocks import PlatformMocks
from infra.offline import Graph, build_graph
from stacks.loader import ConfigError, as_engine_config, read_stack_file, stack_file, validate

PROJECT_DIR = Path(__file__).resolve().parent.parent

ZONE = "Z0EXAMPLE00ZONE"
ISSUED = "arn:aws:acm:us-west-2:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
# AWS's table of ELB hosted zones (https://docs.aws.amazon.com/general/latest/gr/elb.html): ALBs in us-west-2.
US_WEST_2_ALB_ZONE = "Z1H1FL5HABSF5"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
ANNOTATION = "alb.ingress.kubernetes.io"


def prod_with_edge(edge: dict) -> dict:
    values = read_stack_file(stack_file(PROJECT_DIR, "prod"))
    return {**values, "edge": edge}


def test_domain_without_zone_or_certificate_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as raised:
        validate("prod", prod_with_edge({"domain": "llm.example.com"}), "Pulumi.prod.yaml")
    message = str(raised.value)
    assert message.startswith("Pulumi.prod.yaml: llm-platform:edge: domain llm.example.com needs hostedZoneId")
    assert "certificateArn" in message and "\n" not in message


def test_certificate_from_another_region_is_a_config_error() -> None:
    elsewhere = ISSUED.replace("us-west-2", "us-east-1")
    with pytest.raises(ConfigError) as raised:
        validate("prod", prod_with_edge({"domain": "llm.example.com", "certificateArn": elsewhere}), "x")
    assert "edge.certificateArn is in us-east-1 but the stack deploys to us-west-2" in str(raised.value)


class MarkedValidation(PlatformMocks):
    """Gives the validated certificate's ARN a mark the raw certificate's lacks, to see which one the Ingress uses."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == "aws:acm/certificateValidation:CertificateValidation":
            outputs["certificateArn"] += "#validated"
        return resource_id, outputs


@pytest.fixture(scope="module")
def zone_graph() -> Graph:
    values = read_stack_file(stack_file(PROJECT_DIR, "prod"))
    return build_graph(validate("prod", values, "x"), "prod", as_engine_config(values), MarkedValidation("us-west-2"))


def test_https_listener_uses_the_certificate_only_once_validated(zone_graph: Graph) -> None:
    record = zone_graph.one("aws:route53/record:Record", "edge-certificate-validation").inputs
    assert record["zoneId"] == ZONE and record["type"] == "CNAME"
    validation = zone_graph.one("aws:acm/certificateValidation:CertificateValidation").inputs
    assert validation["validationRecordFqdns"] == [record["name"].rstrip(".")]
    annotations = zone_graph.one(INGRESS).inputs["metadata"]["annotations"]
    assert annotations[f"{ANNOTATION}/certificate-arn"].endswith("#validated")
    assert json.loads(annotations[f"{ANNOTATION}/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]


def test_domain_points_at_the_gateway_alb(zone_graph: Graph) -> None:
    alias = zone_graph.one("aws:route53/record:Record", "edge-domain").inputs
    assert (alias["zoneId"], alias["name"], alias["type"]) == (ZONE, "llm.example.com", "A")
    (target,) = alias["aliases"]
    assert target["name"] == zone_graph.outputs["gatewayLoadBalancer"], "the ALB the Ingress got"
    assert target["zoneId"] == US_WEST_2_ALB_ZONE and target["evaluateTargetHealth"] is True
    name = zone_graph.one(INGRESS).inputs["metadata"]["annotations"][f"{ANNOTATION}/load-balancer-name"]
    assert target["name"].startswith(f"{name}-") and len(name) <= 32  # ELB's limit on load balancer names


@pytest.fixture(scope="module")
def certificate_graph() -> Graph:
    values = prod_with_edge({"domain": "llm.example.com", "certificateArn": ISSUED})
    return build_graph(validate("prod", values, "x"), "prod", as_engine_config(values))


def test_an_issued_certificate_is_used_as_given(certificate_graph: Graph) -> None:
    assert certificate_graph.of_type("aws:acm/certificate:Certificate") == []
    assert certificate_graph.of_type("aws:route53/record:Record") == [], "no zone: the user points the domain"
    annotations = certificate_graph.one(INGRESS).inputs["metadata"]["annotations"]
    assert annotations[f"{ANNOTATION}/certificate-arn"] == ISSUED
    assert certificate_graph.outputs["gatewayUrl"] == "https://llm.example.com"
    assert certificate_graph.outputs["gatewayLoadBalancer"].endswith(".us-west-2.elb.amazonaws.com")
