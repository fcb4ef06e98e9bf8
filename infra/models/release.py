"""The release operations, on a bucket and registry table already chosen: publish, verify, promote, rollback."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from infra import stackfile
from infra.models import store
from infra.models.errors import Refused
from infra.models.manifest import LocalFile, Manifest, ManifestFile, sha256_bytes, sha256_file, version_prefix
from infra.models.registry import RETIRED, Ref, Registry
from stacks.config import PlatformConfig

# A progress phase: (description, total bytes) -> a callable that advances it by n bytes.
Phase = Callable[[str, int], Callable[[int], None] | None]


def no_progress(description: str, total: int) -> None:
    return None


@dataclass(frozen=True)
class Backend:
    s3: Any
    bucket: str
    registry: Registry


@dataclass(frozen=True)
class Published:
    manifest: Manifest
    upload: store.UploadResult


def refuse_if_published(backend: Backend, name: str, version: str) -> None:
    if backend.registry.get(name, version):
        raise Refused(f"{name} {version} is already published; versions are immutable, publish a new one")


def publish(
    backend: Backend,
    files: list[LocalFile],
    name: str,
    version: str,
    stack: str,
    source: tuple[str, str | None],
    transfer: TransferConfig = store.DEFAULT_TRANSFER,
    phase: Phase = no_progress,
) -> Published:
    """Hash, upload what is not there yet, write MANIFEST.json, then the registry item. Safe to re-run after a
    failure at any point: finished uploads are skipped, and a manifest already written for the same files is kept."""
    refuse_if_published(backend, name, version)
    prefix = version_prefix(name, version)
    total = sum(local.size for local in files)
    hashing = phase("sha256", total)
    hashed = [(local, sha256_file(local.source, hashing)) for local in files]
    entries = tuple(ManifestFile(local.path, local.size, sha256) for local, sha256 in hashed)

    existing = store.read_manifest(backend.s3, backend.bucket, prefix)
    if existing is not None and Manifest.from_bytes(existing).files != entries:
        raise Refused(f"s3://{backend.bucket}/{prefix} already has a MANIFEST.json for other files; not overwriting")
    upload = store.upload_files(backend.s3, backend.bucket, prefix, hashed, transfer, phase("upload", total))
    if existing is None:
        manifest = Manifest(
            name=name, version=version, source=source[0], revision=source[1], created_by=backend.registry.actor,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"), files=entries,
        )
        manifest_sha256 = store.write_manifest(backend.s3, backend.bucket, prefix, manifest)
    else:  # an earlier run wrote the manifest and stopped before the registry
        manifest, manifest_sha256 = Manifest.from_bytes(existing), sha256_bytes(existing)
    backend.registry.register(manifest, manifest_sha256, stack)
    return Published(manifest, upload)


def verify(backend: Backend, name: str, version: str, deep: bool, phase: Phase = no_progress) -> list[str]:
    """Problems with a published version, one line each: the manifest against the registry, objects against it."""
    row = backend.registry.require(name, version)
    prefix = version_prefix(name, version)
    body = store.read_manifest(backend.s3, backend.bucket, prefix)
    if body is None:
        return [f"{store.MANIFEST_NAME}: missing from s3://{backend.bucket}/{prefix}"]
    problems = []
    if sha256_bytes(body) != row.item["manifestSha256"]:
        problems.append(f"{store.MANIFEST_NAME}: differs from the one the registry recorded at publish")
    manifest = Manifest.from_bytes(body)
    advance = phase("sha256 in S3", manifest.total_bytes) if deep else None
    return problems + store.verify_objects(backend.s3, backend.bucket, prefix, manifest, deep, advance)


@dataclass(frozen=True)
class Switched:
    active: Ref
    replaced: Ref | None
    stack_file: Path
    file_changed: bool
    config: PlatformConfig


def _servable(backend: Backend, ref: Ref, stack: str) -> None:
    row = backend.registry.require(ref.name, ref.version)
    if row.status(stack) == RETIRED:
        raise Refused(f"{ref} is retired on {stack}; publish a new version instead")
    prefix = version_prefix(ref.name, ref.version)
    if store.head(backend.s3, backend.bucket, prefix + store.MANIFEST_NAME) is None:
        raise Refused(f"{ref}: no {store.MANIFEST_NAME} under s3://{backend.bucket}/{prefix}; run `models verify`")


def model_settings(name: str, version: str) -> stackfile.Settings:
    """What a promote writes to the stack file: stream this version from the model bucket."""
    return {("serving", "vllm", "modelSource"): "s3", ("serving", "vllm", "model"): version_prefix(name, version)}


def promote(backend: Backend, project_dir: Path, stack: str, name: str, version: str) -> Switched:
    """Registry first (the conditional write decides a race), then the stack file, already validated."""
    target = Ref(name, version)
    _servable(backend, target, stack)
    edit = stackfile.prepare(project_dir, stack, model_settings(name, version))
    try:
        state = backend.registry.stack_state(stack)
        if state.active != target:
            backend.registry.promote(state, target)
    except BaseException:
        edit.discard()
        raise
    edit.commit()
    return Switched(target, state.active if state.active != target else None, edit.path, bool(edit.staged), edit.config)


def rollback(backend: Backend, project_dir: Path, stack: str) -> Switched:
    stackfile.existing_stack_file(project_dir, stack)
    state = backend.registry.stack_state(stack)
    if not state.previous:
        raise Refused(f"stack {stack} has no earlier version to roll back to")
    target = state.previous[-1]
    _servable(backend, target, stack)
    edit = stackfile.prepare(project_dir, stack, model_settings(target.name, target.version))
    try:
        backend.registry.rollback(state)
    except BaseException:
        edit.discard()
        raise
    edit.commit()
    return Switched(target, state.active, edit.path, bool(edit.staged), edit.config)
