"""S3 and ElastiCache: the model bucket and the gateway's Redis.

pulumi-aws 7 configures a bucket through companion resources (encryption, versioning, public access block,
policy, lifecycle), so the bucket rules are stack rules that find each bucket's companions by dependency.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from .common import (
    ADVISORY,
    CRITICAL,
    HIGH,
    LOW,
    MEDIUM,
    flag,
    get,
    has,
    items,
    json_document,
    linked,
    number,
    of_type,
    resource_rule,
    stack_rule,
    statements,
)

BUCKET = "aws:s3/bucket:Bucket"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
BUCKET_ACL = "aws:s3/bucketAcl:BucketAcl"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE_TABLE_ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
ROUTE = "aws:ec2/route:Route"

PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")


def _companions(resources: list[PolicyResource], bucket: PolicyResource, kind: str) -> list[PolicyResource]:
    return [resource for resource in of_type(resources, kind) if linked(resource, bucket)]


def _each_bucket(resources: list[PolicyResource], kind: str, missing: str, judge: Any) -> Iterator[tuple[str, str]]:
    """For every bucket: a violation if no companion of `kind` exists, else whatever `judge(props)` says."""
    for bucket in of_type(resources, BUCKET):
        companions = _companions(resources, bucket, kind)
        if not companions:
            yield f"bucket {bucket.name} has no {missing}", bucket.urn
        for companion in companions:
            for message in judge(companion.props):
                yield f"bucket {bucket.name}: {message}", companion.urn


def _kms_encryption(props: Mapping[str, Any]) -> Iterator[str]:
    for rule in items(get(props, "rules")):
        default = get(rule, "applyServerSideEncryptionByDefault")
        if get(default, "sseAlgorithm") not in ("aws:kms", "aws:kms:dsse") or not has(default, "kmsMasterKeyId"):
            yield "default encryption is not SSE-KMS with a customer-managed key (sseAlgorithm aws:kms, kmsMasterKeyId)"
    if not items(get(props, "rules")):
        yield "the encryption configuration has no rule"


def _versioning(props: Mapping[str, Any]) -> Iterator[str]:
    status = get(props, "versioningConfiguration", "status")
    if status != "Enabled":
        yield f"versioning status is {status!r}, not 'Enabled'"


def _public_access_block(props: Mapping[str, Any]) -> Iterator[str]:
    keys = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    off = [key for key in keys if not flag(get(props, key))]
    if off:
        yield f"public access is not blocked: {', '.join(off)} not true"


def _denies_insecure_transport(statement: Mapping[str, Any]) -> bool:
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    condition = get(statement, "Condition", "Bool", "aws:SecureTransport")
    return (
        statement.get("Effect") == "Deny"
        and statement.get("Principal") in ("*", {"AWS": "*"})
        and any(action in ("*", "s3:*") for action in actions)
        and str(condition).lower() == "false"
    )


def _tls_only(props: Mapping[str, Any]) -> Iterator[str]:
    document = json_document(get(props, "policy"))
    if document is None or not any(_denies_insecure_transport(s) for s in statements(document)):
        yield "the bucket policy does not deny s3:* when aws:SecureTransport is false"


def _tls_only_policy(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    return _each_bucket(resources, BUCKET_POLICY, "bucket policy (TLS-only)", _tls_only)


def _noncurrent_expiry(max_days: float) -> Any:
    def judge(props: Mapping[str, Any]) -> Iterator[str]:
        days = [
            number(get(rule, "noncurrentVersionExpiration", "noncurrentDays"))
            for rule in items(get(props, "rules"))
            if get(rule, "status") == "Enabled"
        ]
        found = [day for day in days if day is not None]
        if not found:
            yield "no enabled lifecycle rule expires noncurrent versions"
        elif min(found) > max_days:
            yield f"noncurrent versions are kept {min(found):g} days, more than {max_days:g}"

    return judge


def _public_acl(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    acl = get(props, "acl")
    if acl in PUBLIC_ACLS:
        yield f"canned ACL {acl!r} makes the bucket readable outside the account"


def _force_destroy(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if not settings["allowForceDestroy"] and flag(get(props, "forceDestroy")):
        yield "forceDestroy is true: deleting the stack would delete every object (model weights) with it"


S3_RULES = [
    stack_rule(
        "s3-encryption-kms",
        "Every S3 bucket is encrypted by default with SSE-KMS and a customer-managed key.",
        severity=HIGH,
        remediation="Add an aws.s3.BucketServerSideEncryptionConfiguration with sse_algorithm 'aws:kms' and the "
        "ARN of a rotated KMS key (components/model_store.py does this for the model bucket).",
        check=lambda resources, settings: _each_bucket(
            resources, ENCRYPTION, "server-side encryption configuration", _kms_encryption
        ),
    ),
    stack_rule(
        "s3-versioning",
        "Every S3 bucket keeps object versions, so an overwritten or deleted model can be restored.",
        severity=MEDIUM,
        remediation="Add an aws.s3.BucketVersioning with status 'Enabled'.",
        check=lambda resources, settings: _each_bucket(resources, VERSIONING, "versioning", _versioning),
    ),
    stack_rule(
        "s3-public-access-blocked",
        "Every S3 bucket blocks public ACLs and public policies (all four public access block settings).",
        severity=CRITICAL,
        remediation="Add an aws.s3.BucketPublicAccessBlock with block_public_acls, block_public_policy, "
        "ignore_public_acls and restrict_public_buckets all true.",
        check=lambda resources, settings: _each_bucket(
            resources, PUBLIC_ACCESS_BLOCK, "public access block", _public_access_block
        ),
    ),
    stack_rule(
        "s3-tls-only",
        "Every S3 bucket policy denies requests that do not use TLS.",
        severity=HIGH,
        remediation="Add a bucket policy statement: Effect Deny, Principal '*', Action 's3:*', on the bucket and "
        "its objects, Condition Bool aws:SecureTransport 'false'.",
        check=_tls_only_policy,
    ),
    stack_rule(
        "s3-noncurrent-version-lifecycle",
        "Noncurrent object versions expire, so old model weights do not accumulate cost forever.",
        severity=LOW,
        remediation="Add an aws.s3.BucketLifecycleConfiguration rule with noncurrent_version_expiration "
        "(modelStore.noncurrentVersionExpirationDays).",
        level=ADVISORY,
        check=lambda resources, settings: _each_bucket(
            resources, LIFECYCLE, "lifecycle configuration", _noncurrent_expiry(settings["maxNoncurrentDays"])
        ),
        config={"maxNoncurrentDays": {"type": "number", "default": 90, "description": "Longest allowed expiry."}},
    ),
    resource_rule(
        "s3-no-public-acl",
        "No bucket or bucket ACL grants access through a public canned ACL.",
        types=(BUCKET, BUCKET_ACL),
        severity=CRITICAL,
        remediation="Remove the acl argument; buckets use BucketOwnerEnforced object ownership.",
        check=_public_acl,
    ),
    resource_rule(
        "s3-no-force-destroy",
        "Buckets holding data that matters are not force-destroyed with the stack.",
        types=(BUCKET,),
        severity=HIGH,
        remediation="Set modelStore.forceDestroy to false for this stack.",
        check=_force_destroy,
        config={"allowForceDestroy": {"type": "boolean", "default": False}},
    ),
]


def _transit_encryption(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if not flag(get(props, "transitEncryptionEnabled")):
        yield "transitEncryptionEnabled is not true: clients talk to Redis in clear text"
    elif get(props, "transitEncryptionMode") == "preferred":
        yield "transitEncryptionMode is 'preferred': clients may still connect without TLS"


def _at_rest_encryption(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if not flag(get(props, "atRestEncryptionEnabled")):
        yield "atRestEncryptionEnabled is not true"


def _auth_token(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if not has(props, "authToken") and not has(props, "userGroupIds"):
        yield "neither an AUTH token nor an RBAC user group protects Redis"


def _multi_az(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if not settings["required"]:
        return
    replicas = number(get(props, "numCacheClusters"), 0) or 0
    replicas = max(replicas, 1 + (number(get(props, "replicasPerNodeGroup"), 0) or 0))
    problems = [
        name for name, ok in (
            ("automaticFailoverEnabled", flag(get(props, "automaticFailoverEnabled"))),
            ("multiAzEnabled", flag(get(props, "multiAzEnabled"))),
            ("at least 2 nodes", replicas >= 2),
        ) if not ok
    ]
    if problems:
        yield f"no multi-AZ failover: missing {', '.join(problems)}"


def _is_public_subnet(subnet: PolicyResource, resources: list[PolicyResource]) -> bool:
    if flag(get(subnet.props, "mapPublicIpOnLaunch")) or get(subnet.props, "tags", "kubernetes.io/role/elb") == "1":
        return True
    tables = [
        association.property_dependencies.get("routeTableId", [])
        for association in of_type(resources, ROUTE_TABLE_ASSOCIATION)
        if subnet in association.property_dependencies.get("subnetId", [])
    ]
    return any(_routes_to_internet_gateway(table, resources) for group in tables for table in group)


def _routes_to_internet_gateway(table: PolicyResource, resources: list[PolicyResource]) -> bool:
    routes = list(items(get(table.props, "routes")))
    routes += [r.props for r in of_type(resources, ROUTE) if table in r.property_dependencies.get("routeTableId", [])]
    return any(str(get(route, "gatewayId", default="")).startswith("igw-") for route in routes)


def _private_subnets(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for group in of_type(resources, REPLICATION_GROUP):
        for subnet_group in group.property_dependencies.get("subnetGroupName", []):
            for subnet in subnet_group.property_dependencies.get("subnetIds", []):
                if subnet.resource_type == SUBNET and _is_public_subnet(subnet, resources):
                    yield f"Redis {group.name} uses public subnet {subnet.name} (subnet group {subnet_group.name})", \
                        group.urn


CACHE_TYPES = (REPLICATION_GROUP,)

CACHE_RULES = [
    resource_rule(
        "redis-encryption-in-transit",
        "ElastiCache Redis requires TLS for every connection.",
        types=CACHE_TYPES,
        severity=CRITICAL,
        remediation="Set transit_encryption_enabled=True and transit_encryption_mode='required'; clients use rediss://.",
        check=_transit_encryption,
    ),
    resource_rule(
        "redis-encryption-at-rest",
        "ElastiCache Redis encrypts its data and snapshots at rest.",
        types=CACHE_TYPES,
        severity=HIGH,
        remediation="Set at_rest_encryption_enabled=True (a replacement: plan it before data matters).",
        check=_at_rest_encryption,
    ),
    resource_rule(
        "redis-auth-token",
        "ElastiCache Redis requires authentication (an AUTH token or RBAC user groups).",
        types=CACHE_TYPES,
        severity=HIGH,
        remediation="Set auth_token from a generated secret (components/cache.py) or attach user_group_ids.",
        check=_auth_token,
    ),
    resource_rule(
        "redis-multi-az",
        "Where the stack requires it (prod), Redis has a replica in another AZ with automatic failover.",
        types=CACHE_TYPES,
        severity=HIGH,
        remediation="Set cache.replicas to 2 or more: the component then turns on automatic failover and multi-AZ.",
        check=_multi_az,
        config={"required": {"type": "boolean", "default": True, "description": "false in dev"}},
    ),
    stack_rule(
        "redis-private-subnets",
        "ElastiCache Redis runs only in private subnets (no internet gateway route, no public IPs).",
        severity=HIGH,
        remediation="Build the cache subnet group from the network's private subnet ids.",
        check=_private_subnets,
    ),
]
