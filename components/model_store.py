"""The S3 bucket holding model weights, the DynamoDB registry of their versions (written by `llm-platform models`),
and the read-only role the serving pods assume to stream the weights."""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pydantic import Field

from components import compile_cache, iam
from components.config_base import StrictModel

S3_BUCKET_PATTERN = r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# The registry's key: one item per (model name, version); the release CLI (infra/models) reads the same names.
REGISTRY_PARTITION_KEY = "model"
REGISTRY_SORT_KEY = "version"


class ModelStoreConfig(StrictModel):
    bucket_name: str | None = Field(
        default=None, pattern=S3_BUCKET_PATTERN, description="Default: <project>-<stack>-models-<account id>."
    )
    noncurrent_version_expiration_days: int = Field(default=30, ge=1, le=3650)
    force_destroy: bool = False


@dataclass(frozen=True)
class ModelStoreArgs:
    config: ModelStoreConfig
    bucket_name: str
    # Prod: the bucket, its key and the registry table survive `pulumi destroy` and replaces (children inherit it).
    protect: bool = False
    # The serving role may also write the shared torch.compile cache, under its prefix only (compile_cache.py).
    compile_cache_writable: bool = False


class ModelStore(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    key_arn: pulumi.Output[str]
    registry_table_name: pulumi.Output[str]
    reader_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:ModelStore", name, None, opts)
        config = args.config
        child = pulumi.ResourceOptions(parent=self)
        stateful = pulumi.ResourceOptions(parent=self, protect=args.protect)

        key = aws.kms.Key(
            f"{name}-weights",
            description=f"Encryption of model weights in s3://{args.bucket_name}",
            enable_key_rotation=True,
            opts=stateful,
        )
        bucket = aws.s3.Bucket(
            f"{name}-bucket", bucket=args.bucket_name, force_destroy=config.force_destroy, opts=stateful
        )
        bucket_child = pulumi.ResourceOptions(parent=bucket)
        public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=bucket_child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=bucket_child
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=bucket_child
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": key.arn,
                    },
                    # One KMS call per bucket key, not per object: multi-GB shards stream without KMS throttling.
                    "bucket_key_enabled": True,
                }
            ],
            opts=bucket_child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-noncurrent-weights",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": config.noncurrent_version_expiration_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                }
            ],
            opts=bucket_child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=iam.document(
                [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [bucket.arn, bucket.arn.apply(lambda arn: f"{arn}/*")],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ]
            ),
            # S3 rejects a bucket policy while the public access block is still being applied.
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[public_access_block]),
        )

        registry = self._registry_table(name, args, key)

        reader = aws.iam.Role(
            f"{name}-reader",
            description="Read-only access to model weights for serving pods (EKS Pod Identity)",
            assume_role_policy=iam.pod_identity_trust(),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-reader",
            role=reader.id,
            policy=iam.document(
                [
                    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": bucket.arn},
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                        "Resource": bucket.arn.apply(lambda arn: f"{arn}/*"),
                    },
                    {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": key.arn},
                    *self._cache_writes(args, bucket, key),
                ]
            ),
            opts=pulumi.ResourceOptions(parent=reader),
        )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.key_arn = key.arn
        self.registry_table_name = registry.name
        self.reader_role_arn = reader.arn
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "key_arn": self.key_arn,
                "registry_table_name": self.registry_table_name,
                "reader_role_arn": self.reader_role_arn,
            }
        )

    @staticmethod
    def _cache_writes(args: ModelStoreArgs, bucket: aws.s3.Bucket, key: aws.kms.Key) -> list[iam.Statement]:
        """With a shared compile cache: objects under its prefix (the weights stay read-only), encrypted with the
        bucket's key (SSE-KMS needs kms:GenerateDataKey to write)."""
        if not args.compile_cache_writable:
            return []
        return [compile_cache.write_statement(bucket.arn),
                {"Sid": "EncryptCompileCache", "Effect": "Allow", "Action": ["kms:GenerateDataKey"],
                 "Resource": key.arn}]

    def _registry_table(self, name: str, args: ModelStoreArgs, key: aws.kms.Key) -> aws.dynamodb.Table:
        """Which model versions exist and which one each stack serves; a handful of writes per release."""
        return aws.dynamodb.Table(
            f"{name}-registry",
            billing_mode="PAY_PER_REQUEST",
            hash_key=REGISTRY_PARTITION_KEY,
            range_key=REGISTRY_SORT_KEY,
            attributes=[
                {"name": REGISTRY_PARTITION_KEY, "type": "S"},
                {"name": REGISTRY_SORT_KEY, "type": "S"},
            ],
            server_side_encryption={"enabled": True, "kms_key_arn": key.arn},
            point_in_time_recovery={"enabled": True},
            deletion_protection_enabled=args.protect,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
