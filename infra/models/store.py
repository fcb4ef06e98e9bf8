"""The model bucket side: upload a version's files (multipart for large ones), then its MANIFEST.json; check them.

Each object carries its full SHA-256 in the user metadata `sha256`, set when the upload starts and stored with the
object only once the upload completes. A re-run compares that and the size with the local file and skips matching
objects, so an interrupted publish resumes where it stopped. S3's own checksum of a multipart object is a checksum of
its part checksums, so it cannot stand in for the file's hash.
"""

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from infra.models.errors import Refused
from infra.models.manifest import CHUNK, MANIFEST_NAME, LocalFile, Manifest, ManifestFile, sha256_bytes

SHA256_METADATA = "sha256"
MiB = 1024 * 1024
# 64 MiB parts keep a 10 GB shard at 160 parts (S3 allows 10,000) and retry little on a failed part.
DEFAULT_TRANSFER = TransferConfig(multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB, max_concurrency=8)

Advance = Callable[[int], None]


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


def head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        response: dict[str, Any] = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _missing(error):
            return None
        raise
    return response


def read_manifest(s3: Any, bucket: str, prefix: str) -> bytes | None:
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=prefix + MANIFEST_NAME)["Body"].read()
    except ClientError as error:
        if _missing(error):
            return None
        raise
    return body


def already_there(s3: Any, bucket: str, key: str, size: int, sha256: str) -> bool:
    found = head(s3, bucket, key)
    return found is not None and found["ContentLength"] == size and found.get("Metadata", {}).get(
        SHA256_METADATA
    ) == sha256


@dataclass(frozen=True)
class UploadResult:
    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]


def upload_files(
    s3: Any,
    bucket: str,
    prefix: str,
    files: list[tuple[LocalFile, str]],
    transfer: TransferConfig = DEFAULT_TRANSFER,
    advance: Advance | None = None,
) -> UploadResult:
    """Upload each (file, sha256) not already present with the same size and hash."""
    uploaded, skipped = [], []
    for local, sha256 in files:
        key = prefix + local.path
        if already_there(s3, bucket, key, local.size, sha256):
            skipped.append(local.path)
            if advance:
                advance(local.size)
            continue
        s3.upload_file(
            str(local.source), bucket, key,
            ExtraArgs={"Metadata": {SHA256_METADATA: sha256}}, Config=transfer, Callback=advance,
        )
        uploaded.append(local.path)
    return UploadResult(tuple(uploaded), tuple(skipped))


def write_manifest(s3: Any, bucket: str, prefix: str, manifest: Manifest) -> str:
    """Write MANIFEST.json only if none exists (S3 conditional write): two publishers cannot both finish a version.
    Returns the manifest's SHA-256, which the registry keeps."""
    body = manifest.to_bytes()
    try:
        s3.put_object(
            Bucket=bucket, Key=prefix + MANIFEST_NAME, Body=body, ContentType="application/json", IfNoneMatch="*",
            Metadata={SHA256_METADATA: sha256_bytes(body)},
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
            raise Refused(f"s3://{bucket}/{prefix}{MANIFEST_NAME} appeared meanwhile: another publish won") from None
        raise
    return sha256_bytes(body)


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _content_sha256(s3: Any, bucket: str, key: str, advance: Advance | None) -> str:
    digest = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    while chunk := body.read(CHUNK):
        digest.update(chunk)
        if advance:
            advance(len(chunk))
    return digest.hexdigest()


def _file_problems(
    s3: Any, bucket: str, key: str, entry: ManifestFile, deep: bool, advance: Advance | None
) -> list[str]:
    found = head(s3, bucket, key)
    if found is None:
        return [f"{entry.path}: missing"]
    if found["ContentLength"] != entry.size:
        return [f"{entry.path}: {found['ContentLength']} bytes, manifest says {entry.size}"]
    problems = []
    if found.get("Metadata", {}).get(SHA256_METADATA) != entry.sha256:
        problems.append(f"{entry.path}: sha256 metadata differs from the manifest (object replaced?)")
    if deep and _content_sha256(s3, bucket, key, advance) != entry.sha256:
        problems.append(f"{entry.path}: content sha256 differs from the manifest")
    return problems


def verify_objects(
    s3: Any, bucket: str, prefix: str, manifest: Manifest, deep: bool, advance: Advance | None = None
) -> list[str]:
    """Every difference between the objects under `prefix` and the manifest, one line each (empty: all good).
    Shallow: presence, size and the stored hash; deep: also re-reads and hashes every byte."""
    problems = []
    for entry in manifest.files:
        problems += _file_problems(s3, bucket, prefix + entry.path, entry, deep, advance)
    listed = {entry.path for entry in manifest.files} | {MANIFEST_NAME}
    # vLLM loads every *.safetensors under the prefix: an extra shard would change the model served.
    problems += [
        f"{obj['Key'].removeprefix(prefix)}: not in the manifest"
        for obj in _objects(s3, bucket, prefix)
        if obj["Key"].removeprefix(prefix) not in listed
    ]
    return problems
