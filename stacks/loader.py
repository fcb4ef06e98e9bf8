"""Turns the `llm-platform:` namespace of a stack's configuration into a validated `PlatformConfig`.

Two sources feed the same validation: the Pulumi engine (values as strings, objects as JSON, exactly what
`pulumi up` hands a Python program) and `Pulumi.<stack>.yaml` read directly by the offline preview.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from stacks.config import PlatformConfig
from stacks.defaults import PROFILE_DEFAULTS, deep_merge

NAMESPACE = "llm-platform"


class ConfigError(Exception):
    """A stack's configuration is invalid; `str()` is one line per problem, each naming the key."""


def stack_file(project_dir: Path, stack: str) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `llm-platform:` keys of a stack file, prefix removed, values as YAML typed them."""
    if not path.is_file():
        raise ConfigError(f"{path.name}: no such stack file in {path.parent}")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path.name}: not valid YAML: {' '.join(str(error).split())}") from None
    config = document.get("config") if isinstance(document, dict) else None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path.name}: 'config' must be a mapping of keys to values")
    prefix = f"{NAMESPACE}:"
    return {key.removeprefix(prefix): value for key, value in config.items() if key.startswith(prefix)}


def as_engine_config(values: Mapping[str, Any]) -> dict[str, str]:
    """What the Pulumi engine passes the program for these values: strings, with objects JSON-encoded."""
    return {
        f"{NAMESPACE}:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
    }


def from_engine_config(engine_config: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `as_engine_config` for the keys of our namespace. Scalars stay strings (pydantic coerces
    them by field type, so a bucket name like "123" is never turned into a number)."""
    prefix = f"{NAMESPACE}:"
    values: dict[str, Any] = {}
    for key, raw in engine_config.items():
        if not key.startswith(prefix):
            continue
        value = raw
        if isinstance(raw, str) and raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        values[key.removeprefix(prefix)] = value
    return values


def validate(stack: str, values: Mapping[str, Any], source: str) -> PlatformConfig:
    """Merge the profile's defaults under `values` and validate. Raises ConfigError naming each bad key."""
    profile = values.get("profile", stack if stack in PROFILE_DEFAULTS else None)
    if profile not in PROFILE_DEFAULTS:
        allowed = ", ".join(PROFILE_DEFAULTS)
        got = "unset" if profile is None else repr(profile)
        raise ConfigError(
            f"{source}: {NAMESPACE}:profile: {got}; stacks not named {allowed} must set profile to one of: {allowed}"
        )
    merged = deep_merge(PROFILE_DEFAULTS[profile], {**values, "profile": profile})
    try:
        return PlatformConfig.model_validate(merged)
    except ValidationError as error:
        raise ConfigError("\n".join(_describe(error, source))) from None


def _describe(error: ValidationError, source: str) -> list[str]:
    lines = []
    for problem in error.errors(include_url=False):
        location = [str(part) for part in problem["loc"]]
        key = f"{NAMESPACE}:{'.'.join(location)}" if location else NAMESPACE
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(location[:-1])
            message = f"unknown key; allowed here: {', '.join(allowed)}"
        elif "input" in problem and problem["type"] not in {"missing"} and not isinstance(
            problem["input"], dict
        ):
            message = f"{message} (got {problem['input']!r})"
        lines.append(f"{source}: {key}: {message}")
    return lines


def _allowed_keys(path: list[str]) -> list[str]:
    model: type[BaseModel] = PlatformConfig
    for part in path:
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(field.alias or name for name, field in model.model_fields.items())


def load_stack_file(project_dir: Path, stack: str) -> PlatformConfig:
    path = stack_file(project_dir, stack)
    return validate(stack, read_stack_file(path), path.name)


def load_from_engine(stack: str, engine_config: Mapping[str, Any]) -> PlatformConfig:
    return validate(stack, from_engine_config(engine_config), f"stack {stack}")
