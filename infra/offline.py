"""The offline engine: the real program under `pulumi.runtime.set_mocks`, recorded as a resource graph.

No AWS account, no Pulumi CLI. Each run happens in a fresh context, so dev and prod build in one process.
"""

import asyncio
import contextvars
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra.mocks import ACCOUNT_ID, PlatformMocks
from infra.program import run
from stacks.config import PlatformConfig
from stacks.gpu_images import IMAGES_TAG, gpu_node_images, images_sha256
from stacks.loader import as_engine_config, load_stack_file, read_stack_file, stack_file

PROJECT = "llm-platform"
SECRET_MASK = "[secret]"


@dataclass(frozen=True)
class GraphResource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    # Input properties the engine leaves alone on update (e.g. `spec.replicas` of an autoscaled Deployment).
    ignore_changes: tuple[str, ...] = ()
    # How long the engine waits for a create/update/delete, where the program sets it (e.g. "1800s").
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    # Every URN the engine waits for before creating this resource (and deletes only after it): the explicit
    # `depends_on` (components expanded to their children) and the owners of every Output among the inputs.
    dependencies: tuple[str, ...] = ()
    # Input property -> the URNs its value came from.
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    protect: bool = False
    delete_before_replace: bool = False
    retain_on_delete: bool = False
    # "<provider URN>::<provider id>" of an explicit provider; None for the default provider and components.
    provider: str | None = None

    @property
    def depends_on(self) -> tuple[str, ...]:
        """The explicit `depends_on`, as near as the request shows it. The SDK sends one merged `dependencies` list;
        an explicit dependency that is also an input's source is indistinguishable from the implicit one, so this is
        `dependencies` minus every URN some input came from: never a URN the program did not list, but it may miss
        one it listed that an input also names."""
        implicit = {urn for urns in self.property_dependencies.values() for urn in urns}
        return tuple(urn for urn in self.dependencies if urn not in implicit)

    def options(self) -> dict[str, Any]:
        """The resource options the engine received, as in `preview --json`."""
        return {
            "dependsOn": list(self.depends_on),
            "protect": self.protect,
            "ignoreChanges": list(self.ignore_changes),
            "customTimeouts": dict(self.custom_timeouts),
            "deleteBeforeReplace": self.delete_before_replace,
            "retainOnDelete": self.retain_on_delete,
            "provider": self.provider,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "custom": self.custom,
            "inputs": self.inputs,
            "dependencies": list(self.dependencies),
            "propertyDependencies": {prop: list(urns) for prop, urns in self.property_dependencies.items()},
            "options": self.options(),
        }


@dataclass
class Graph:
    project: str
    stack: str
    config: PlatformConfig
    resources: list[GraphResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, type_token: str) -> list[GraphResource]:
        return [resource for resource in self.resources if resource.type == type_token]

    def one(self, type_token: str, name: str | None = None) -> GraphResource:
        """The single resource of this type (and name): a test that names it fails loudly if it is missing."""
        matches = [r for r in self.of_type(type_token) if name is None or r.name == name]
        if len(matches) != 1:
            names = [r.name for r in self.of_type(type_token)]
            raise LookupError(f"expected one {type_token} named {name!r}, found {len(matches)} among {names}")
        return matches[0]

    def children(self, parent_urn: str) -> list[GraphResource]:
        return [resource for resource in self.resources if resource.parent == parent_urn]

    def to_json(self, reveal_secrets: bool = False) -> dict[str, Any]:
        return {
            "project": self.project,
            "stack": self.stack,
            "resources": [resource.to_json() for resource in self.resources],
            "outputs": {
                name: SECRET_MASK if name in self.secret_outputs and not reveal_secrets else value
                for name, value in self.outputs.items()
            },
        }


def plain(value: Any) -> Any:
    """An engine value as JSON data: secrets masked, unknowns null, whole floats as ints (the engine sends
    every number as a float), resource references as their URN, a string asset (a Helm values file) as its text."""
    if rpc.is_rpc_secret(value):
        return SECRET_MASK
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, pulumi.StringAsset):
        return {"text": value.text}
    if isinstance(value, pulumi.Resource):
        return _sync_await(value.urn.future())
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, plus a record of every registration: parent, inputs, dependencies and options as the
    engine sees them."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.recorded: list[GraphResource] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.recorded.append(
                GraphResource(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent or None,
                    custom=request.custom,
                    inputs=plain(rpc.deserialize_properties(request.object)),
                    ignore_changes=tuple(request.ignoreChanges),
                    custom_timeouts={
                        operation: getattr(request.customTimeouts, operation)
                        for operation in ("create", "update", "delete")
                        if getattr(request.customTimeouts, operation)
                    },
                    dependencies=tuple(sorted(set(request.dependencies))),
                    property_dependencies={
                        prop: tuple(sorted(set(deps.urns)))
                        for prop, deps in sorted(request.propertyDependencies.items())
                        if deps.urns
                    },
                    protect=request.protect,
                    delete_before_replace=request.deleteBeforeReplace,
                    retain_on_delete=request.retainOnDelete,
                    provider=request.provider or None,
                )
            )
        return response


def built_snapshot(config: PlatformConfig) -> dict[str, Any]:
    """The GPU pool's image snapshot as `llm-platform images snapshot` would have tagged it for this stack."""
    return {"tags": {IMAGES_TAG: images_sha256(gpu_node_images(config, ACCOUNT_ID))}}


def build_graph(
    config: PlatformConfig, stack: str, engine_config: dict[str, str], mocks: PlatformMocks | None = None
) -> Graph:
    """Run the program for an already validated config; returns its graph. A fresh context and event loop per
    run keep stacks apart and do not depend on the caller's loop (asyncio.run() leaves none behind). `mocks`
    replaces the default pretend AWS (e.g. another caller identity)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return contextvars.Context().run(_build_graph, config, stack, engine_config, mocks)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _build_graph(
    config: PlatformConfig, stack: str, engine_config: dict[str, str], mocks: PlatformMocks | None
) -> Graph:
    monitor = RecordingMonitor(mocks or PlatformMocks(config.region, snapshot=built_snapshot(config)))
    pulumi.runtime.set_all_config(engine_config)
    pulumi_mocks.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    _sync_await(run_pulumi_func(lambda: run(PROJECT, stack, offline=True)))

    graph = Graph(project=PROJECT, stack=stack, config=config)
    graph.resources = sorted(monitor.recorded, key=lambda resource: resource.urn)
    root = pulumi.runtime.get_root_resource()
    exported: dict[str, Any] = getattr(root, "outputs", {})
    for name, value in exported.items():
        output = pulumi.Output.from_input(value)
        graph.outputs[name] = plain(_sync_await(output.future()))
        if _sync_await(output.is_secret()):
            graph.secret_outputs.add(name)
    return graph


def preview_stack(project_dir: Path, stack: str) -> Graph:
    """Validate `Pulumi.<stack>.yaml` (ConfigError if it is wrong), then build the stack's graph offline."""
    config = load_stack_file(project_dir, stack)
    values = read_stack_file(stack_file(project_dir, stack))
    return build_graph(config, stack, as_engine_config(values))
