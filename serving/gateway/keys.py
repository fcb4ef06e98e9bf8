"""API keys: only sha256 hashes are stored; a request's bearer key is hashed and looked up in a dict."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True)
class ApiKey:
    id: str
    rpm: int
    tpm: int


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(path: str, default_rpm: int, default_tpm: int) -> dict[str, ApiKey]:
    """Maps sha256 hex -> key; a malformed file raises ValueError naming the entry."""
    data = orjson.loads(Path(path).read_bytes())
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected {{'keys': [...]}}")
    keys: dict[str, ApiKey] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or len(entry.get("sha256", "")) != 64:
            raise ValueError(f"{path}: keys[{i}] needs an 'id' and a 64-hex-digit 'sha256'")
        keys[entry["sha256"].lower()] = ApiKey(
            entry["id"], int(entry.get("rpm", default_rpm)), int(entry.get("tpm", default_tpm))
        )
    return keys
