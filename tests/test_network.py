"""The VPC: subnets tagged for the load balancer controller and Karpenter, NAT per stack, endpoints, flow logs."""

import ipaddress

from infra.offline import Graph

SUBNET = "aws:ec2/subnet:Subnet"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"


def subnets(graph: Graph, tier: str) -> list:
    return [s for s in graph.of_type(SUBNET) if s.name.startswith(f"network-{tier}-")]


def test_one_public_and_one_private_subnet_per_az(dev_graph: Graph, prod_graph: Graph) -> None:
    for graph, zones in ((dev_graph, 2), (prod_graph, 3)):
        assert len(subnets(graph, "public")) == zones
        assert len(subnets(graph, "private")) == zones
        assert {s.inputs["availabilityZone"] for s in subnets(graph, "private")} == set(
            graph.outputs["availabilityZones"]
        )


def test_subnets_tagged_for_load_balancers_and_karpenter(graph: Graph) -> None:
    cluster = graph.outputs["clusterName"]
    for subnet in subnets(graph, "public"):
        assert subnet.inputs["tags"]["kubernetes.io/role/elb"] == "1", subnet.urn
        assert subnet.inputs["mapPublicIpOnLaunch"] is False, subnet.urn
        assert "karpenter.sh/discovery" not in subnet.inputs["tags"], subnet.urn
    for subnet in subnets(graph, "private"):
        tags = subnet.inputs["tags"]
        assert tags["kubernetes.io/role/internal-elb"] == "1", subnet.urn
        assert tags["karpenter.sh/discovery"] == cluster, subnet.urn
        assert tags[f"kubernetes.io/cluster/{cluster}"] == "shared", subnet.urn


def test_subnets_fit_the_vpc_without_overlap(graph: Graph) -> None:
    vpc = ipaddress.IPv4Network(graph.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"])
    blocks = [ipaddress.IPv4Network(s.inputs["cidrBlock"]) for s in graph.of_type(SUBNET)]
    assert all(block.subnet_of(vpc) for block in blocks)
    assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])


def test_one_nat_in_dev_and_one_per_az_in_prod(dev_graph: Graph, prod_graph: Graph) -> None:
    assert len(dev_graph.of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert len(prod_graph.of_type("aws:ec2/natGateway:NatGateway")) == 3
    private_tables = [t for t in prod_graph.of_type("aws:ec2/routeTable:RouteTable") if "private" in t.name]
    assert len({t.inputs["routes"][0]["natGatewayId"] for t in private_tables}) == 3, "one NAT per AZ's table"


def test_private_subnets_route_out_through_nat_only(graph: Graph) -> None:
    for table in graph.of_type("aws:ec2/routeTable:RouteTable"):
        route = table.inputs["routes"][0]
        if "private" in table.name:
            assert route.get("natGatewayId") and not route.get("gatewayId"), table.urn
        else:
            assert route["gatewayId"].startswith("igw-"), table.urn


def test_s3_gateway_and_private_interface_endpoints(graph: Graph) -> None:
    region = graph.config.region
    endpoints = {e.inputs["serviceName"]: e for e in graph.of_type(ENDPOINT)}
    s3 = endpoints[f"com.amazonaws.{region}.s3"]
    assert s3.inputs["vpcEndpointType"] == "Gateway"
    assert len(s3.inputs["routeTableIds"]) == len(subnets(graph, "private"))
    private_ids = set(graph.outputs["privateSubnetIds"])
    for service in ("ecr.api", "ecr.dkr", "sts"):
        endpoint = endpoints[f"com.amazonaws.{region}.{service}"]
        assert endpoint.inputs["vpcEndpointType"] == "Interface", endpoint.urn
        assert endpoint.inputs["privateDnsEnabled"] is True, endpoint.urn
        assert set(endpoint.inputs["subnetIds"]) == private_ids, endpoint.urn


def test_flow_logs_capture_all_traffic(graph: Graph) -> None:
    flow_log = graph.one("aws:ec2/flowLog:FlowLog")
    assert flow_log.inputs["trafficType"] == "ALL"
    assert flow_log.inputs["vpcId"] == graph.outputs["vpcId"]
    retention = graph.one("aws:cloudwatch/logGroup:LogGroup", "network-flow-logs").inputs["retentionInDays"]
    assert retention == graph.config.network.flow_log_retention_days
