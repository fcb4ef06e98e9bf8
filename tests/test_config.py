"""Stack configuration: defaults per profile, and one clear line naming the key for every mistake."""

from pathlib import Path

import pytest

from stacks.defaults import deep_merge
from stacks.loader import ConfigError, as_engine_config, load_from_engine, load_stack_file, validate

PROJECT_DIR = Path(__file__).resolve().parent.parent
# What a dev stack must set (its API endpoint is public, so restricted); each test adds one mistake to it.
VALID_DEV = {"cluster": {"publicAccessCidrs": ["198.51.100.0/24"]}}


def error_for(values: dict, stack: str = "dev") -> str:
    with pytest.raises(ConfigError) as raised:
        validate(stack, deep_merge(VALID_DEV, values), "Pulumi.test.yaml")
    return str(raised.value)


def test_stack_files_are_valid_and_differ_as_configured() -> None:
    dev = load_stack_file(PROJECT_DIR, "dev")
    prod = load_stack_file(PROJECT_DIR, "prod")
    assert (dev.network.az_count, prod.network.az_count) == (2, 3)
    assert (dev.network.nat_gateways, prod.network.nat_gateways) == ("single", "per_az")
    assert (dev.cache.replicas, prod.cache.replicas) == (1, 2)
    assert prod.cluster.public_endpoint is True and prod.cluster.public_access_cidrs
    assert prod.edge.domain == "llm.example.com"


def test_engine_strings_give_the_same_config_as_yaml_values() -> None:
    values = {"network": {"azCount": 3, "vpcCidr": "10.9.0.0/16"}, "monthlyBudgetUsd": 750,
              "cluster": {"publicAccessCidrs": ["198.51.100.0/24"]}}
    from_engine = load_from_engine("dev", as_engine_config(values))
    assert from_engine == validate("dev", values, "x")
    assert from_engine.monthly_budget_usd == 750.0 and from_engine.network.az_count == 3


def test_unknown_key_is_named_with_the_allowed_ones() -> None:
    message = error_for({"network": {"natGatway": "single"}})
    assert message.splitlines() == [
        "Pulumi.test.yaml: llm-platform:network.natGatway: unknown key; allowed here: azCount, flowLogRetentionDays,"
        " natGateways, privateSubnetCidrs, publicSubnetCidrs, vpcCidr"
    ]


def test_unknown_top_level_key() -> None:
    assert "llm-platform:regoin: unknown key; allowed here: addons, cache, cluster" in error_for({"regoin": "x"})


def test_wrong_type_names_key_and_value() -> None:
    message = error_for({"network": {"azCount": "three"}})
    assert message.startswith("Pulumi.test.yaml: llm-platform:network.azCount: ")
    assert "'three'" in message and len(message.splitlines()) == 1


def test_literal_lists_the_allowed_values() -> None:
    message = error_for({"network": {"natGateways": "two"}})
    assert "llm-platform:network.natGateways" in message and "'single' or 'per_az'" in message


def test_subnet_that_does_not_fit_the_vpc() -> None:
    message = error_for({"network": {"vpcCidr": "10.0.0.0/16", "privateSubnetCidrs": ["10.1.0.0/18", "10.0.64.0/18"]}})
    assert message == (
        "Pulumi.test.yaml: llm-platform:network: "
        "privateSubnetCidrs entry 10.1.0.0/18 does not fit in vpcCidr 10.0.0.0/16"
    )


def test_overlapping_subnets() -> None:
    message = error_for({"network": {"privateSubnetCidrs": ["10.0.0.0/18", "10.0.192.0/18"]}})
    assert "overlaps publicSubnetCidrs entry 10.0.192.0/20" in message


def test_malformed_cidr() -> None:
    message = error_for({"network": {"vpcCidr": "10.0.0.1/16"}})
    assert message.startswith("Pulumi.test.yaml: llm-platform:network.vpcCidr: not an IPv4 CIDR block")


def test_public_endpoint_must_be_restricted() -> None:
    assert "publicAccessCidrs is empty" in error_for({"cluster": {"publicAccessCidrs": []}})
    assert "must not contain 0.0.0.0/0" in error_for({"cluster": {"publicAccessCidrs": ["0.0.0.0/0"]}})


def test_node_group_sizes_ordered() -> None:
    message = error_for({"cluster": {"systemNodes": {"minSize": 4}}})
    assert "llm-platform:cluster.systemNodes: need minSize <= desiredSize <= maxSize, got 4, 2, 3" in message


def test_other_stack_names_need_a_profile() -> None:
    assert "stacks not named dev, prod must set profile" in error_for({}, stack="staging")
    assert validate("staging", {"profile": "prod", **VALID_DEV}, "x").cache.replicas == 2


def test_every_problem_is_reported_one_per_line() -> None:
    message = error_for({"region": "mars-1", "cache": {"replicas": 9}})
    lines = message.splitlines()
    assert len(lines) == 2
    assert lines[0] == "Pulumi.test.yaml: llm-platform:region: not an AWS region like us-west-2 (got 'mars-1')"
    assert lines[1].startswith("Pulumi.test.yaml: llm-platform:cache.replicas: ")
