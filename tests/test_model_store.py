"""The model bucket: versioned, KMS-encrypted, never public, TLS only; and a read-only role for serving pods."""

import json
from pathlib import Path

from infra.offline import Graph

PROJECT_DIR = Path(__file__).resolve().parent.parent


def test_versioning_enabled(graph: Graph) -> None:
    versioning = graph.one("aws:s3/bucketVersioning:BucketVersioning").inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"


def test_encrypted_with_a_rotating_kms_key(graph: Graph) -> None:
    (rule,) = graph.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    key = graph.one("aws:kms/key:Key", "model-store-weights")
    assert key.inputs["enableKeyRotation"] is True
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith("arn:aws:kms:")


def test_all_public_access_blocked(graph: Graph) -> None:
    block = graph.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    for setting in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block[setting] is True, setting
    ownership = graph.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"


def test_policy_denies_non_tls_access(graph: Graph) -> None:
    policy = json.loads(graph.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    bucket = graph.outputs["modelBucketName"]
    assert statement["Resource"] == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]


def test_noncurrent_versions_expire_per_stack(dev_graph: Graph, prod_graph: Graph) -> None:
    for graph, days in ((dev_graph, 7), (prod_graph, 30)):
        (rule,) = graph.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
        assert rule["status"] == "Enabled"
        assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == days


def test_bucket_name_defaults_to_project_stack_account(dev_graph: Graph) -> None:
    assert dev_graph.one("aws:s3/bucket:Bucket").inputs["bucket"] == "llm-platform-dev-models-123456789012"
    assert dev_graph.outputs["modelBucketName"] == "llm-platform-dev-models-123456789012"


def test_reader_role_is_read_only_and_assumed_through_pod_identity(graph: Graph) -> None:
    role = graph.one("aws:iam/role:Role", "model-store-reader")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(trust["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    policy = json.loads(graph.one("aws:iam/rolePolicy:RolePolicy", "model-store-reader").inputs["policy"])
    # Writes (prod's shared compile cache) are scoped apart: tests/test_compile_cache.py.
    reads = [statement for statement in policy["Statement"] if "CompileCache" not in statement.get("Sid", "")]
    actions = {action for statement in reads for action in statement["Action"]}
    assert actions == {
        "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject", "s3:GetObjectVersion", "kms:Decrypt", "kms:DescribeKey"
    }
    assert graph.outputs["modelReaderRoleArn"].startswith("arn:aws:iam::123456789012:role/model-store-reader")


def test_registry_table_is_encrypted_recoverable_and_exported(graph: Graph) -> None:
    table = graph.one("aws:dynamodb/table:Table", "model-store-registry")
    assert table.parent and table.parent.endswith("::model-store"), table.urn
    inputs = table.inputs
    assert inputs["billingMode"] == "PAY_PER_REQUEST", table.urn
    # The key the release CLI writes: (model name, version), both strings.
    assert (inputs["hashKey"], inputs["rangeKey"]) == ("model", "version"), table.urn
    assert {(a["name"], a["type"]) for a in inputs["attributes"]} == {("model", "S"), ("version", "S")}, table.urn
    assert inputs["serverSideEncryption"]["enabled"] is True, table.urn
    # The weights' key: the mock derives a key's ARN from its name, so equal ARNs mean the same key.
    weights_key_arn = json.loads(graph.one("aws:iam/rolePolicy:RolePolicy", "model-store-reader").inputs["policy"])[
        "Statement"
    ][2]["Resource"]
    assert inputs["serverSideEncryption"]["kmsKeyArn"] == weights_key_arn, table.urn
    assert inputs["pointInTimeRecovery"] == {"enabled": True}, table.urn
    assert graph.outputs["modelRegistryTableName"].startswith("model-store-registry-")


def test_registry_table_is_protected_in_prod_only(dev_graph: Graph, prod_graph: Graph) -> None:
    assert prod_graph.one("aws:dynamodb/table:Table").inputs["deletionProtectionEnabled"] is True
    assert dev_graph.one("aws:dynamodb/table:Table").inputs["deletionProtectionEnabled"] is False


def test_prod_registry_table_has_pulumi_protect(dev_graph: Graph, prod_graph: Graph) -> None:
    """`protect` is a resource option, not an input: the graph records what the engine receives."""
    assert prod_graph.one("aws:dynamodb/table:Table").protect is True
    assert dev_graph.one("aws:dynamodb/table:Table").protect is False
