"""Kubernetes objects the program declares, as plain manifests (Helm releases' contents are not included:
the charts render inside the cluster)."""

from typing import Any

from infra.offline import Graph

# Types that are Pulumi machinery rather than Kubernetes objects.
_NOT_OBJECTS = ("kubernetes:helm.sh/", "pulumi:providers:")


def kubernetes_objects(graph: Graph) -> list[dict[str, Any]]:
    """Every Kubernetes object in the graph, fields as the API server would receive them."""
    objects = []
    for resource in graph.resources:
        if not resource.custom or not resource.type.startswith("kubernetes:") or resource.type.startswith(
            _NOT_OBJECTS
        ):
            continue
        manifest = {key: value for key, value in resource.inputs.items() if value is not None}
        manifest["metadata"] = {"name": resource.name, **manifest.get("metadata", {})}
        objects.append(manifest)
    return objects
