"""Validation of rendered Kubernetes objects: core kinds against Kubernetes' strict JSON schemas (the
kubernetes-validate package), custom resources against the upstream CRDs in tests/schemas/, made strict the
way `kubectl --validate=strict` is: a field the schema does not know is an error, not silently pruned."""

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from components.versions import KUBERNETES_VERSION

SCHEMA_DIR = Path(__file__).parent / "schemas"


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema of every served version of every vendored CRD."""
    schemas = {}
    for path in sorted(SCHEMA_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = _strict(version["schema"]["openAPIV3Schema"])
                    # metadata is validated by the API server's ObjectMeta, not the CRD schema.
                    schema["properties"]["metadata"] = {"type": "object"}
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def validate_manifest(manifest: dict[str, Any]) -> list[str]:
    """Problems with one object; an empty list means it is valid for the pinned versions."""
    key = (manifest.get("apiVersion", ""), manifest.get("kind", ""))
    label = f"{key[1]} {manifest.get('metadata', {}).get('name', '?')}"
    schema = crd_schemas().get(key)
    if schema is not None:
        validator = jsonschema.Draft7Validator(schema)
        return [
            f"{label}: {'.'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
            for error in sorted(validator.iter_errors(manifest), key=lambda error: list(error.absolute_path))
        ]
    try:
        kubernetes_validate.validate(manifest, desired_version=KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path) or "<root>"
        return [f"{label}: {path}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"{label}: neither Kubernetes {KUBERNETES_VERSION} nor tests/schemas/ has a schema for {key[0]} {key[1]}"
        ]
    return []
