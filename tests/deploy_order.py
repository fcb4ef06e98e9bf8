"""What the engine finishes before it creates a resource, read from the recorded graph.

The engine creates a resource only after everything in its `dependencies`, its parent (the SDK awaits the
parent's URN, which a custom resource or a component with `depends_on` resolves only once those exist) and its
provider; `pulumi destroy` deletes in the reverse order. So "X waits for Y" also means "Y outlives X on destroy".
"""

from infra.offline import Graph, GraphResource


def _direct(resource: GraphResource) -> set[str]:
    edges = set(resource.dependencies)
    if resource.parent:
        edges.add(resource.parent)
    if resource.provider:
        # A provider reference is "<provider URN>::<provider id>"; URNs themselves contain "::".
        edges.add(resource.provider.rsplit("::", 1)[0])
    return edges


def upstream(graph: Graph, resource: GraphResource) -> set[str]:
    """URNs of everything created before `resource` (transitively)."""
    by_urn = {r.urn: r for r in graph.resources}
    seen: set[str] = set()
    pending = list(_direct(resource))
    while pending:
        urn = pending.pop()
        if urn in seen:
            continue
        seen.add(urn)
        if urn in by_urn:
            pending.extend(_direct(by_urn[urn]))
    return seen


def waits_for(graph: Graph, resource: GraphResource, other: GraphResource) -> bool:
    return other.urn in upstream(graph, resource)


def chart_name(release: GraphResource) -> str:
    """The chart a Helm release installs, whether given by name with a repository or as an oci:// reference."""
    chart: str = release.inputs["chart"]
    return chart.rstrip("/").rsplit("/", 1)[-1]


def release_of(graph: Graph, chart: str) -> GraphResource:
    matches = [r for r in graph.of_type("kubernetes:helm.sh/v3:Release") if chart_name(r) == chart]
    if len(matches) != 1:
        raise LookupError(f"expected one release of chart {chart}, found {[r.urn for r in matches]}")
    return matches[0]
