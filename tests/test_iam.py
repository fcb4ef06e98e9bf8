"""Every IAM document the program writes, linted by parliament: known actions, well-formed, no admin grants."""

import json

import parliament
import pytest

from infra.offline import Graph

ROLE = "aws:iam/role:Role"
# Permission-policy inputs by resource type (trust policies are checked on their own: they name no Resource).
POLICY_INPUTS = {
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
}
# Findings that are errors: an unknown action or prefix is a typo that AWS rejects or silently never matches.
FAILING_ISSUES = {"UNKNOWN_ACTION", "UNKNOWN_PREFIX", "MALFORMED", "MALFORMED_JSON", "UNKNOWN_PRINCIPAL"}
# parliament's action database predates this condition key, which AWS documents for AddTags on create, and the
# ALB IPAM-pool action the load balancer controller's iam_policy.json v2.14.0 grants (components/upstream/).
KNOWN_GAPS = {
    ("UNKNOWN_CONDITION_FOR_ACTION", "elasticloadbalancing:CreateAction"),
    ("UNKNOWN_ACTION", "elasticloadbalancing:ModifyIpPools"),
}


def documents(graph: Graph) -> list[tuple[str, dict]]:
    return [
        (resource.urn, json.loads(resource.inputs[key]))
        for resource in graph.resources
        for type_token, key in POLICY_INPUTS.items()
        if resource.type == type_token
    ]


def test_every_role_has_an_inline_or_managed_policy(graph: Graph) -> None:
    policy_parents = {r.parent for r in graph.resources if r.type in POLICY_INPUTS}
    attached_roles = {
        r.inputs["role"] for r in graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    for role in graph.of_type(ROLE):
        assert role.urn in policy_parents or any(name.startswith(role.name) for name in attached_roles), role.urn


def test_trust_policies_name_one_service_and_only_assume(graph: Graph) -> None:
    for role in graph.of_type(ROLE):
        trust = json.loads(role.inputs["assumeRolePolicy"])
        assert trust["Version"] == "2012-10-17", role.urn
        for statement in trust["Statement"]:
            assert statement["Effect"] == "Allow", role.urn
            assert list(statement["Principal"]) == ["Service"], role.urn
            assert statement["Principal"]["Service"].endswith(".amazonaws.com"), role.urn
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert set(actions) <= {"sts:AssumeRole", "sts:TagSession"}, role.urn


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_policies_pass_parliament(stack: str, dev_graph: Graph, prod_graph: Graph) -> None:
    graph = dev_graph if stack == "dev" else prod_graph
    problems = []
    for urn, document in documents(graph):
        findings = parliament.analyze_policy_string(json.dumps(document)).findings
        for finding in findings:
            detail = str(finding.detail)
            if any(issue == finding.issue and key in detail for issue, key in KNOWN_GAPS):
                continue
            if finding.issue in FAILING_ISSUES or finding.severity in ("HIGH", "CRITICAL"):
                problems.append(f"{urn}: {finding.issue} {detail}")
    assert problems == []


def test_no_allow_of_every_action(graph: Graph) -> None:
    for urn, document in documents(graph):
        for statement in document["Statement"]:
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            if statement["Effect"] == "Allow":
                assert not any(action == "*" or action.endswith(":*") for action in actions), urn


def test_lint_catches_a_misspelled_action() -> None:
    findings = parliament.analyze_policy_string(
        json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "*"}]}
        )
    ).findings
    assert {finding.issue for finding in findings} & FAILING_ISSUES
