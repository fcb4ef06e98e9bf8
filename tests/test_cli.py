"""`llm-platform preview` as a user runs it: a real process, its exit code, what it prints and writes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "infra.cli"]

# Every resource type the foundation promises in the prod graph.
PROD_TYPES = {
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway", "aws:ec2/vpcEndpoint:VpcEndpoint",
    "aws:ec2/flowLog:FlowLog", "eks:index:Cluster", "aws:eks/addon:Addon", "aws:eks/nodeGroup:NodeGroup",
    "aws:kms/key:Key", "aws:elasticache/replicationGroup:ReplicationGroup", "aws:ec2/securityGroup:SecurityGroup",
    "aws:s3/bucket:Bucket", "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "aws:iam/role:Role",
    "aws:eks/podIdentityAssociation:PodIdentityAssociation", "kubernetes:helm.sh/v3:Release",
    "aws:acm/certificate:Certificate", "aws:wafv2/webAcl:WebAcl",
}
REQUIRED_OUTPUTS = {
    "vpcId", "privateSubnetIds", "clusterName", "kubeconfig", "oidcIssuer", "modelBucketName", "redisEndpoint",
    "redisPort", "redisAuthSecretArn", "loadBalancerControllerRoleArn",
}


def preview(*args: str, cwd: Path = PROJECT_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "preview", *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def prod_json(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("graph") / "g.json"
    result = preview("--stack", "prod", "--json", str(path))
    assert result.returncode == 0, result.stderr
    return json.loads(path.read_text())


def test_prod_graph_holds_every_foundation_resource(prod_json: dict) -> None:
    assert prod_json["project"] == "llm-platform" and prod_json["stack"] == "prod"
    assert {resource["type"] for resource in prod_json["resources"]} >= PROD_TYPES
    for resource in prod_json["resources"]:
        assert set(resource) == {
            "urn", "type", "name", "parent", "custom", "inputs", "dependencies", "propertyDependencies", "options"
        }
        assert resource["urn"].startswith("urn:pulumi:prod::llm-platform::")


def test_graph_inputs_are_the_engine_property_names(prod_json: dict) -> None:
    block = next(r for r in prod_json["resources"] if r["type"].endswith("BucketPublicAccessBlock"))
    assert block["inputs"]["blockPublicAcls"] is True
    redis = next(r for r in prod_json["resources"] if r["type"].endswith("ReplicationGroup"))
    assert redis["inputs"]["numCacheClusters"] == 2
    assert redis["inputs"]["authToken"] == "[secret]"


def test_outputs_present_and_secrets_masked(prod_json: dict) -> None:
    assert set(prod_json["outputs"]) >= REQUIRED_OUTPUTS
    assert prod_json["outputs"]["kubeconfig"] == "[secret]"


def test_parents_are_components_in_the_graph(prod_json: dict) -> None:
    stack_urn = "urn:pulumi:prod::llm-platform::pulumi:pulumi:Stack::llm-platform-prod"
    urns = {resource["urn"] for resource in prod_json["resources"]} | {stack_urn}
    components = [r for r in prod_json["resources"] if r["type"].startswith("llm-platform:components:")]
    assert {c["name"] for c in components} >= {"network", "cluster", "cache", "model-store", "edge"}
    for resource in prod_json["resources"]:
        assert resource["parent"] in urns, resource["urn"]
    assert all(c["parent"] == stack_urn for c in components)


def test_tree_printout_groups_by_component() -> None:
    result = preview("--stack", "dev")
    assert result.returncode == 0, result.stderr
    assert "llm-platform / dev:" in result.stdout
    assert "Resources per component" in result.stdout
    assert "kubeconfig" in result.stdout and "[secret]" in result.stdout
    assert "apiVersion" not in result.stdout  # the kubeconfig itself never reaches the terminal


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("  llm-platform:network:\n    azCount: three\n", "llm-platform:network.azCount: "),
        ("  llm-platform:network:\n    natGatway: single\n", "llm-platform:network.natGatway: unknown key"),
        (
            "  llm-platform:network:\n    privateSubnetCidrs: [10.9.0.0/18, 10.0.64.0/18]\n",
            "llm-platform:network: privateSubnetCidrs entry 10.9.0.0/18 does not fit in vpcCidr 10.0.0.0/16",
        ),
    ],
)
def test_broken_stack_file_exits_2_with_one_line(tmp_path: Path, broken: str, expected: str) -> None:
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path)
    stack_file = (PROJECT_DIR / "Pulumi.dev.yaml").read_text() + broken
    (tmp_path / "Pulumi.dev.yaml").write_text(stack_file)
    result = preview("--stack", "dev", "--project-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("Pulumi.dev.yaml: ") and expected in line
    assert "Traceback" not in result.stderr


def test_missing_stack_file_exits_2() -> None:
    result = preview("--stack", "staging")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Pulumi.staging.yaml: no such stack file")
