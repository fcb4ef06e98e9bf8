"""What a model version is: its name and version, the files of a local model directory with their SHA-256, and the
MANIFEST.json that lists them (written last, so a prefix without one is an unfinished upload)."""

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.models.errors import Refused

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_FORMAT = 1
# Lowercase, S3-key and Kubernetes-label friendly; the prefix becomes part of vLLM's --model URI.
NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
# MAJOR.MINOR.PATCH with an optional pre-release (semver 2.0.0 section 9); no leading "v", so 1.0.0 has one spelling.
VERSION_PATTERN = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")
# Weights in formats other than safetensors: vLLM's runai streamer loads safetensors only, so these are not uploaded
# when the directory has safetensors (HF repos often ship both).
OTHER_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx")
CHUNK = 8 * 1024 * 1024


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise Refused(f"--name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', like qwen2.5-7b-instruct")
    return name


def check_version(version: str) -> str:
    if not VERSION_PATTERN.fullmatch(version):
        raise Refused(f"--version {version!r}: use MAJOR.MINOR.PATCH[-prerelease], like 1.2.0 or 1.2.0-rc.1")
    return version


def version_key(version: str) -> tuple[Any, ...]:
    """Semver precedence, close enough for listing: releases after their pre-releases."""
    match = VERSION_PATTERN.fullmatch(version)
    if not match:
        return (1 << 31,)
    major, minor, patch, pre = match.groups()
    return (int(major), int(minor), int(patch), pre is None, pre or "")


def version_prefix(name: str, version: str) -> str:
    """The key prefix of a version in the model bucket; also the `serving.vllm.model` value that serves it."""
    return f"models/{name}/{version}/"


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative, with "/" separators: the key under the version prefix
    source: Path
    size: int


def scan_model_dir(directory: Path) -> tuple[list[LocalFile], list[str]]:
    """The files to upload and the names of those skipped. Refuses a directory that is missing, empty, or without
    safetensors. Hidden files and folders (.git, .cache of `huggingface-cli download`) are not part of the model."""
    if not directory.is_dir():
        raise Refused(f"{directory}: no such directory")
    files = [
        path for path in sorted(directory.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    ]
    if not files:
        raise Refused(f"{directory}: empty directory, nothing to publish")
    if not any(path.suffix == ".safetensors" for path in files):
        raise Refused(f"{directory}: no *.safetensors file; vLLM streams weights from S3 in safetensors format only")
    skipped = [path for path in files if path.suffix in OTHER_WEIGHTS]
    chosen = [path for path in files if path not in skipped]
    return (
        [LocalFile(path.relative_to(directory).as_posix(), path, path.stat().st_size) for path in chosen],
        [path.relative_to(directory).as_posix() for path in skipped],
    )


def sha256_file(path: Path, advance: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            if advance:
                advance(len(chunk))
    return digest.hexdigest()


@dataclass(frozen=True)
class ManifestFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    source: str
    revision: str | None
    created_by: str
    created_at: str
    files: tuple[ManifestFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)

    def to_bytes(self) -> bytes:
        document = {"format": MANIFEST_FORMAT, **asdict(self), "totalBytes": self.total_bytes}
        return (json.dumps(document, indent=2) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        document = json.loads(data)
        return cls(
            name=document["name"],
            version=document["version"],
            source=document["source"],
            revision=document.get("revision"),
            created_by=document["created_by"],
            created_at=document["created_at"],
            files=tuple(ManifestFile(**entry) for entry in document["files"]),
        )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
