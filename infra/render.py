"""Kubernetes objects the program declares, as plain manifests (Helm releases' contents are not included:
the charts render inside the cluster)."""

from pathlib import Path
from typing import Any

import yaml

from infra.offline import SECRET_MASK, Graph

# Types that are Pulumi machinery rather than Kubernetes objects.
_NOT_OBJECTS = ("kubernetes:helm.sh/", "pulumi:providers:")


def kubernetes_objects(graph: Graph) -> list[dict[str, Any]]:
    """Every Kubernetes object in the graph, fields as the API server would receive them. Secret values (a
    Secret's `data`/`stringData`) are left out: the offline graph only holds their mask."""
    objects = []
    for resource in graph.resources:
        if not resource.custom or not resource.type.startswith("kubernetes:") or resource.type.startswith(
            _NOT_OBJECTS
        ):
            continue
        manifest = {
            key: value for key, value in resource.inputs.items() if value is not None and value != SECRET_MASK
        }
        manifest["metadata"] = {"name": resource.name, **manifest.get("metadata", {})}
        objects.append(manifest)
    return objects


def manifest_filename(manifest: dict[str, Any]) -> str:
    """`<namespace or cluster>-<kind>-<name>.yaml`, lowercase."""
    metadata = manifest.get("metadata", {})
    return f"{metadata.get('namespace') or 'cluster'}-{manifest['kind']}-{metadata['name']}.yaml".lower()


def write_manifests(objects: list[dict[str, Any]], directory: Path) -> list[Path]:
    """One YAML file per object in `directory` (created if needed); returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for manifest in objects:
        path = directory / manifest_filename(manifest)
        if path in paths:
            raise ValueError(f"two objects render to {path.name}")
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        paths.append(path)
    return paths
