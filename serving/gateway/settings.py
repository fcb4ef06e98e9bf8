"""Gateway settings: one frozen object resolved from flags, then environment variables, then defaults."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import defaults

LOG_LEVELS = ("debug", "info", "warning", "error")


def _number(convert: Callable[[str], Any], minimum: float, maximum: float | None = None, note: str = "") -> Any:
    """A parser for a number within bounds, whose error names the allowed values."""
    allowed = f"{'an integer' if convert is int else 'a number'} " + (
        f"{minimum}-{maximum}" if maximum is not None else f">= {minimum}"
    )

    def parse(raw: str) -> Any:
        try:
            value = convert(raw)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise ValueError(f"must be {allowed}{note}")
        return value

    return parse


_positive_int = _number(int, 1)
_non_negative_int = _number(int, 0, note=" (0 = off)")
_port = _number(int, 1, 65535)
_positive_float = _number(float, 0.001)
_non_negative_float = _number(float, 0)


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return raw.rstrip("/")


def _redis_url(raw: str) -> str:
    if raw and urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL, or empty to disable cache and limits")
    return raw


def _log_level(raw: str) -> str:
    if raw.lower() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return raw.lower()


def _models(raw: str) -> dict[str, int]:
    models: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, tokens = item.rpartition("=")
        if not sep or not name or not tokens.isdigit() or int(tokens) < 1:
            raise ValueError(f"{item!r} is not 'served-model-name=context-tokens' (e.g. Qwen/Qwen2.5-7B-Instruct=4096)")
        models[name] = int(tokens)
    return models


@dataclass(frozen=True)
class Option:
    name: str
    env: str
    default: str
    parse: Callable[[str], Any]
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("host", "GATEWAY_HOST", "0.0.0.0", str, "address to bind"),
    Option("port", "GATEWAY_PORT", "8080", _port, "port serving the API, /health, /ready and /metrics"),
    Option("upstream", "GATEWAY_UPSTREAM", "http://127.0.0.1:8000", _http_url, "base URL of vLLM (or the simulator)"),
    Option("redis", "GATEWAY_REDIS_URL", "", _redis_url, "Redis URL for rate limits and cache; empty disables both"),
    Option("redis_password", "GATEWAY_REDIS_PASSWORD", "", str, "Redis AUTH token (prefer the env var, from a Secret)"),
    Option(
        "redis_timeout_s",
        "GATEWAY_REDIS_TIMEOUT_S",
        str(defaults.REDIS_TIMEOUT_S),
        _positive_float,
        "time for one Redis call, connecting included, before the request is served without it",
    ),
    Option("api_keys_file", "GATEWAY_API_KEYS_FILE", "", str, "JSON file of hashed API keys (required)"),
    Option("workers", "GATEWAY_WORKERS", str(defaults.WORKERS), _positive_int, "worker processes"),
    Option("models", "GATEWAY_MODELS", "", _models, "comma-separated served-model-name=context-tokens"),
    Option("max_tokens", "GATEWAY_MAX_TOKENS", str(defaults.MAX_TOKENS), _positive_int, "upper bound on max_tokens"),
    Option(
        "max_body_bytes",
        "GATEWAY_MAX_BODY_BYTES",
        str(defaults.MAX_BODY_BYTES),
        _positive_int,
        "largest accepted request body",
    ),
    Option(
        "rate_limit_rpm",
        "GATEWAY_RATE_LIMIT_RPM",
        str(defaults.RATE_LIMIT_RPM),
        _non_negative_int,
        "requests/minute per key, 0 = off",
    ),
    Option(
        "rate_limit_tpm",
        "GATEWAY_RATE_LIMIT_TPM",
        str(defaults.RATE_LIMIT_TPM),
        _non_negative_int,
        "tokens/minute per key, 0 = off",
    ),
    Option(
        "cache_ttl_s",
        "GATEWAY_CACHE_TTL_S",
        str(defaults.CACHE_TTL_S),
        _non_negative_int,
        "response cache TTL in seconds, 0 = off",
    ),
    Option(
        "local_cache_mb",
        "GATEWAY_LOCAL_CACHE_MB",
        str(defaults.LOCAL_CACHE_MB),
        _non_negative_int,
        "memory per worker for copies of cache entries, answered without Redis",
    ),
    Option(
        "rate_limit_lease_percent",
        "GATEWAY_RATE_LIMIT_LEASE_PERCENT",
        str(defaults.RATE_LIMIT_LEASE_PERCENT),
        _number(float, 0, 10, " (0 = count each request in Redis before answering it)"),
        "share of a key's per-minute limit a worker takes from Redis at once",
    ),
    Option(
        "hold_timeout_s",
        "GATEWAY_HOLD_TIMEOUT_S",
        str(defaults.HOLD_TIMEOUT_S),
        _non_negative_float,
        "hold time while no upstream",
    ),
    Option(
        "upstream_connect_timeout_s",
        "GATEWAY_UPSTREAM_CONNECT_TIMEOUT_S",
        str(defaults.UPSTREAM_CONNECT_TIMEOUT_S),
        _positive_float,
        "upstream connect",
    ),
    Option(
        "upstream_read_timeout_s",
        "GATEWAY_UPSTREAM_READ_TIMEOUT_S",
        str(defaults.UPSTREAM_READ_TIMEOUT_S),
        _positive_float,
        "upstream read gap",
    ),
    Option(
        "drain_timeout_s",
        "GATEWAY_DRAIN_TIMEOUT_S",
        str(defaults.DRAIN_TIMEOUT_S),
        _non_negative_float,
        "in-flight wait on SIGTERM",
    ),
    Option("log_level", "GATEWAY_LOG_LEVEL", defaults.LOG_LEVEL, _log_level, f"one of {', '.join(LOG_LEVELS)}"),
)


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    upstream: str
    redis: str
    redis_password: str
    redis_timeout_s: float
    api_keys_file: str
    workers: int
    models: dict[str, int]
    max_tokens: int
    max_body_bytes: int
    rate_limit_rpm: int
    rate_limit_tpm: int
    cache_ttl_s: int
    local_cache_mb: int
    rate_limit_lease_percent: float
    hold_timeout_s: float
    upstream_connect_timeout_s: float
    upstream_read_timeout_s: float
    drain_timeout_s: float
    log_level: str

    @classmethod
    def resolve(cls, flags: Mapping[str, str | None], env: Mapping[str, str]) -> Settings:
        """Flag wins over env var over default; raises SettingError naming both spellings of a bad value."""
        values: dict[str, Any] = {}
        for opt in OPTIONS:
            raw = flags.get(opt.name)
            if raw is None:
                raw = env.get(opt.env, opt.default)
            try:
                values[opt.name] = opt.parse(raw)
            except ValueError as exc:
                raise SettingError(f"{opt.flag} / {opt.env}={raw!r}: {exc}") from None
        if not values["api_keys_file"]:
            raise SettingError("--api-keys-file / GATEWAY_API_KEYS_FILE is required")
        return cls(**values)

    @classmethod
    def from_env(cls) -> Settings:
        return cls.resolve({}, os.environ)

    def to_env(self) -> dict[str, str]:
        """The env vars that reproduce these settings, so worker processes resolve the same values."""
        out = {}
        for opt in OPTIONS:
            value = getattr(self, opt.name)
            if isinstance(value, dict):
                value = ",".join(f"{name}={tokens}" for name, tokens in value.items())
            out[opt.env] = str(value)
        return out


class SettingError(ValueError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for opt in OPTIONS:
        parser.add_argument(opt.flag, dest=opt.name, help=f"{opt.help} [env {opt.env}, default {opt.default!r}]")


def parse(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m serving.gateway",
        description="OpenAI-compatible API gateway in front of vLLM.",
        epilog="'python -m serving.gateway hash-key' reads an API key on stdin and prints its keys-file entry.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return Settings.resolve(vars(args), env)
    except SettingError as exc:
        parser.error(str(exc))
