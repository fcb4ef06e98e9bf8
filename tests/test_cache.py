"""ElastiCache Redis: TLS in transit, encrypted at rest, AUTH token as a secret, reachable from nodes only."""

from infra.offline import Graph

GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"


def test_encrypted_in_transit_and_at_rest(graph: Graph) -> None:
    redis = graph.one(GROUP).inputs
    assert redis["transitEncryptionEnabled"] is True
    assert redis["transitEncryptionMode"] == "required"
    assert redis["atRestEncryptionEnabled"] is True


def test_auth_token_generated_and_kept_secret(graph: Graph) -> None:
    assert graph.one(GROUP).inputs["authToken"] == "[secret]"
    password = graph.one("random:index/randomPassword:RandomPassword").inputs
    assert password["length"] >= 32 and password["special"] is False
    assert graph.one("aws:secretsmanager/secretVersion:SecretVersion").inputs["secretString"] == "[secret]"
    assert graph.outputs["redisAuthSecretArn"].startswith("arn:aws:secretsmanager:")


def test_only_cluster_nodes_reach_redis(graph: Graph) -> None:
    group = graph.one("aws:ec2/securityGroup:SecurityGroup", "cache-redis").inputs
    (rule,) = group["ingress"]
    assert (rule["fromPort"], rule["toPort"]) == (6379, 6379)
    assert rule["securityGroups"] == [graph.one("aws:ec2/tag:Tag").inputs["resourceId"]]
    assert not rule.get("cidrBlocks")


def test_private_subnets_only(graph: Graph) -> None:
    subnets = graph.one("aws:elasticache/subnetGroup:SubnetGroup").inputs["subnetIds"]
    assert set(subnets) == set(graph.outputs["privateSubnetIds"])


def test_multi_az_failover_in_prod_single_node_in_dev(dev_graph: Graph, prod_graph: Graph) -> None:
    dev = dev_graph.one(GROUP).inputs
    assert dev["numCacheClusters"] == 1
    assert dev["multiAzEnabled"] is False and dev["automaticFailoverEnabled"] is False
    prod = prod_graph.one(GROUP).inputs
    assert prod["numCacheClusters"] == 2
    assert prod["multiAzEnabled"] is True and prod["automaticFailoverEnabled"] is True
    assert prod["snapshotRetentionLimit"] == 7


def test_endpoint_and_port_are_outputs(graph: Graph) -> None:
    assert graph.outputs["redisEndpoint"].startswith("master.")
    assert graph.outputs["redisPort"] == 6379
