"""Who can reach a stack's API server on its first deploy, and who gets cluster-admin access entries."""

import logging
from pathlib import Path

import pytest
import yaml

from components.cluster import admin_access_principals, principal_identity
from infra.mocks import PlatformMocks
from infra.offline import Graph, build_graph
from stacks.defaults import deep_merge
from stacks.loader import ConfigError, as_engine_config, read_stack_file, stack_file, validate

PROJECT_DIR = Path(__file__).resolve().parent.parent
EKS = "eks:index:Cluster"
ACCOUNT = "123456789012"
ADMINS = f"arn:aws:iam::{ACCOUNT}:role/platform-admins"
AUDITORS = f"arn:aws:iam::{ACCOUNT}:role/teams/auditors"
# What STS reports while `pulumi up` runs under the platform-admins role (e.g. from SSO or a CI job).
ADMINS_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/platform-admins/ci-1234"


def prod_values(**cluster: object) -> dict:
    return deep_merge(read_stack_file(stack_file(PROJECT_DIR, "prod")), {"cluster": cluster})


def config_error(values: dict, stack: str = "prod") -> str:
    with pytest.raises(ConfigError) as raised:
        validate(stack, values, "Pulumi.test.yaml")
    return str(raised.value)


def test_prod_api_server_answers_the_deployers_named_in_the_stack_file(prod_graph: Graph) -> None:
    stack = yaml.safe_load((PROJECT_DIR / "Pulumi.prod.yaml").read_text())["config"]["llm-platform:cluster"]
    cluster = prod_graph.one(EKS).inputs
    assert cluster["endpointPublicAccess"] is True, "a private-only endpoint on a new VPC is unreachable"
    assert cluster["publicAccessCidrs"] == stack["publicAccessCidrs"]
    assert cluster["endpointPrivateAccess"] is True


def test_private_only_endpoint_that_nothing_reaches_is_a_config_error() -> None:
    message = config_error(prod_values(publicEndpoint=False))
    assert message.startswith("Pulumi.test.yaml: llm-platform:cluster: publicEndpoint is false and privateAccessCidrs")
    assert "publicAccessCidrs" in message and "\n" not in message


def test_prod_profile_asks_for_the_deployers_cidrs() -> None:
    assert "llm-platform:cluster: publicEndpoint is true but publicAccessCidrs is empty" in config_error({})


def test_any_address_is_refused_on_both_endpoints() -> None:
    for key in ("publicAccessCidrs", "privateAccessCidrs"):
        assert f"{key} must not contain 0.0.0.0/0" in config_error(prod_values(**{key: ["0.0.0.0/0"]}))


@pytest.fixture(scope="module")
def private_graph() -> Graph:
    """Prod locked down after bootstrap: private endpoint only, reached from a VPN range."""
    values = prod_values(publicEndpoint=False, publicAccessCidrs=[], privateAccessCidrs=["10.100.0.0/16"])
    return build_graph(validate("prod", values, "x"), "prod", as_engine_config(values))


def test_private_access_cidrs_get_https_on_the_cluster_security_group(private_graph: Graph) -> None:
    cluster = private_graph.one(EKS).inputs
    assert cluster["endpointPublicAccess"] is False and "publicAccessCidrs" not in cluster
    (rule,) = private_graph.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    cluster_security_group = private_graph.one("aws:ec2/tag:Tag").inputs["resourceId"]
    assert rule.inputs["securityGroupId"] == cluster_security_group, rule.urn
    assert (rule.inputs["cidrIpv4"], rule.inputs["ipProtocol"]) == ("10.100.0.0/16", "tcp")
    assert rule.inputs["fromPort"] == rule.inputs["toPort"] == 443


@pytest.mark.parametrize(
    ("arn", "identity"),
    [
        (ADMINS_SESSION, ("aws", ACCOUNT, "role", "platform-admins")),
        (ADMINS, ("aws", ACCOUNT, "role", "platform-admins")),
        (f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_1a2b",
         ("aws", ACCOUNT, "role", "AWSReservedSSO_Admin_1a2b")),
        (f"arn:aws:iam::{ACCOUNT}:user/alice", ("aws", ACCOUNT, "user", "alice")),
        (f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/deployer/s", ("aws-us-gov", ACCOUNT, "role", "deployer")),
        (f"arn:aws:sts::{ACCOUNT}:federated-user/bob", None),
    ],
)
def test_caller_arns_name_their_iam_principal(arn: str, identity: tuple | None) -> None:
    assert principal_identity(arn) == identity


def test_the_deployer_is_recognised_whatever_the_role_path() -> None:
    sso_role = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_1a2b"
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Admin_1a2b/alice@example.org"
    assert admin_access_principals([sso_role, AUDITORS], session) == ([AUDITORS], [sso_role])
    other_account = "arn:aws:sts::210987654321:assumed-role/platform-admins/ci"
    assert admin_access_principals([ADMINS], other_account) == ([ADMINS], [])


@pytest.fixture(scope="module")
def deployed_by_an_admin() -> tuple[Graph, list[str]]:
    """Prod deployed by a session of a role that adminPrincipalArns also lists; returns the graph and warnings."""
    values = prod_values(adminPrincipalArns=[ADMINS, AUDITORS])
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        graph = build_graph(validate("prod", values, "x"), "prod", as_engine_config(values),
                            PlatformMocks("us-west-2", caller_arn=ADMINS_SESSION))
    finally:
        logging.getLogger().removeHandler(handler)
    return graph, warnings


def test_the_deploying_role_gets_no_second_access_entry(deployed_by_an_admin: tuple[Graph, list[str]]) -> None:
    graph, _ = deployed_by_an_admin
    entries = graph.one(EKS).inputs["accessEntries"]
    # The other admin keeps the key of its position in adminPrincipalArns: skipping one renames nothing.
    assert {key: entry["principalArn"] for key, entry in entries.items()} == {"admin-1": AUDITORS}


def test_skipping_the_deployer_is_a_warning_naming_it(deployed_by_an_admin: tuple[Graph, list[str]]) -> None:
    _, warnings = deployed_by_an_admin
    (warning,) = [message for message in warnings if "adminPrincipalArns" in message]
    assert ADMINS in warning and ADMINS_SESSION in warning and "pulumi-eks#2373" in warning


def test_network_policies_are_enforced(graph: Graph) -> None:
    """Amazon VPC CNI enforces NetworkPolicy only with its policy agent on (enableNetworkPolicy)."""
    assert graph.one(EKS).inputs["vpcCniOptions"]["enableNetworkPolicy"] is True
