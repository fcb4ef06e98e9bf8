"""Helpers every rule uses: building policies, and reading properties the way the engine hands them over.

Under the real engine `props` are read-only mappings wrapped in an unknown-checking proxy (pulumi-policy #445),
nested values are `Mapping`/`Sequence` rather than dict/list, and every number arrives as a float. Reading an
unknown value raises `UnknownValueError`, which the SDK reports as "can't run policy during preview": rules read
only the properties they judge.
"""

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY
LOW, MEDIUM, HIGH, CRITICAL = Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL

WORLD = ("0.0.0.0/0", "::/0")

ResourceCheck = Callable[[Mapping[str, Any], Mapping[str, Any], ResourceValidationArgs], Iterable[str]]
StackCheck = Callable[[list[PolicyResource], Mapping[str, Any]], Iterable[tuple[str, str | None]]]


def is_map(value: Any) -> bool:
    return isinstance(value, Mapping)


def is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def get(value: Any, *path: str | int, default: Any = None) -> Any:
    """`value[path[0]][path[1]]...`, or `default` where a step is missing or of the wrong kind."""
    for key in path:
        if isinstance(key, int):
            if not is_list(value) or not -len(value) <= key < len(value):
                return default
        elif not is_map(value) or key not in value:
            return default
        value = value[key]
    return default if value is None else value


def has(value: Any, *path: str) -> bool:
    """Whether `path` is set. A value still unknown during a preview (the ARN of a KMS key created in the same
    update) counts as set, where reading it would stop the rule with "can't run policy during preview"."""
    try:
        return bool(get(value, *path))
    except UnknownValueError:
        return True


def items(value: Any) -> list[Any]:
    """A list property as a list; anything else (missing, null) as empty."""
    return list(value) if is_list(value) else []


def flag(value: Any) -> bool:
    """A boolean input: providers take some booleans as strings (`encrypted: "true"` in a launch template)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def number(value: Any, default: float | None = None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def plain(value: Any) -> Any:
    """Proxied mappings and sequences as dicts and lists (for JSON and set logic)."""
    if is_map(value):
        return {key: plain(value[key]) for key in value}
    if is_list(value):
        return [plain(item) for item in value]
    return value


def json_document(value: Any) -> dict[str, Any] | None:
    """An IAM-style policy document given as a JSON string or an object; None if it is neither."""
    if isinstance(value, str):
        try:
            document = json.loads(value)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None
    return plain(value) if is_map(value) else None


def statements(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = document.get("Statement", [])
    return [found] if isinstance(found, dict) else [s for s in found if isinstance(s, dict)]


def as_list(value: Any) -> list[Any]:
    return list(value) if is_list(value) else ([] if value is None else [value])


def duration_seconds(value: Any) -> float | None:
    """A Go/Karpenter duration (`15m`, `1h30m`, `90s`) in seconds; None for `Never` or nonsense."""
    if not isinstance(value, str) or not value:
        return number(value)
    total, digits = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for char in value:
        if char.isdigit() or char == ".":
            digits += char
        elif char in units and digits:
            total, digits = total + float(digits) * units[char], ""
        else:
            return None
    return None if digits else total


def _defaults(schema: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    return {key: spec["default"] for key, spec in (schema or {}).items() if "default" in spec}


def _metadata(
    name: str, description: str, level: EnforcementLevel, severity: Any, remediation: str,
    config: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """What every rule declares: the README's table and Pulumi Cloud show these."""
    return {
        "name": name, "description": description, "enforcement_level": level, "severity": severity,
        "remediation_steps": remediation,
        "config_schema": PolicyConfigSchema(properties={k: dict(v) for k, v in config.items()}) if config else None,
    }


def resource_rule(
    name: str,
    description: str,
    *,
    types: Sequence[str],
    severity: Any,
    remediation: str,
    check: ResourceCheck,
    level: EnforcementLevel = MANDATORY,
    config: Mapping[str, Mapping[str, Any]] | None = None,
) -> ResourceValidationPolicy:
    """A policy over resources of `types`; `check(props, config, args)` yields one message per violation."""
    wanted = frozenset(types)

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in wanted:
            return
        settings = _defaults(config) | dict(args.get_config() or {})
        for message in check(args.props, settings, args):
            report_violation(message, None)

    metadata = _metadata(name, description, level, severity, remediation, config)
    return ResourceValidationPolicy(validate=validate, **metadata)


def stack_rule(
    name: str,
    description: str,
    *,
    severity: Any,
    remediation: str,
    check: StackCheck,
    level: EnforcementLevel = MANDATORY,
    config: Mapping[str, Mapping[str, Any]] | None = None,
) -> StackValidationPolicy:
    """A policy over the whole stack; `check(resources, config)` yields `(message, urn or None)` per violation."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        settings = _defaults(config) | dict(args.get_config() or {})
        for message, urn in check(args.resources, settings):
            report_violation(message, urn)

    metadata = _metadata(name, description, level, severity, remediation, config)
    return StackValidationPolicy(validate=validate, **metadata)


def of_type(resources: Iterable[PolicyResource], *types: str) -> list[PolicyResource]:
    return [resource for resource in resources if resource.resource_type in types]


def depends_on(resource: PolicyResource) -> set[str]:
    """URNs this resource waits for directly: its dependencies and property dependencies."""
    urns = {dependency.urn for dependency in resource.dependencies}
    for dependencies in resource.property_dependencies.values():
        urns.update(dependency.urn for dependency in dependencies)
    return urns


def linked(companion: PolicyResource, target: PolicyResource) -> bool:
    """Whether `companion` configures `target` (a bucket's policy, a VPC's flow log): it depends on it or is its
    child. Graphs written before dependencies were recorded fall back to siblings under one component."""
    if target.urn in depends_on(companion) or (companion.parent and companion.parent.urn == target.urn):
        return True
    recorded = companion.dependencies or companion.property_dependencies
    return not recorded and companion.parent is not None and companion.parent is target.parent


def waits_for(resource: PolicyResource, resources: list[PolicyResource]) -> set[str]:
    """Every URN `resource` waits for, transitively; a component dependency stands for all its descendants
    (the SDKs expand `dependsOn` on a component to its children)."""
    by_urn = {r.urn: r for r in resources}
    children: dict[str, list[str]] = {}
    for r in resources:
        if r.parent is not None:
            children.setdefault(r.parent.urn, []).append(r.urn)
    seen: set[str] = set()
    todo = list(depends_on(resource))
    while todo:
        urn = todo.pop()
        if urn in seen:
            continue
        seen.add(urn)
        todo.extend(children.get(urn, []))
        if urn in by_urn:
            todo.extend(depends_on(by_urn[urn]))
    return seen


def labels_match(selector: Any, labels: Any) -> bool:
    """A Kubernetes `matchLabels` selector (or a plain label map) against labels; an empty selector matches all."""
    wanted = get(selector, "matchLabels") if is_map(get(selector, "matchLabels")) else selector
    if not is_map(wanted):
        return not selector
    return all(get(labels, key) == value for key, value in wanted.items())
