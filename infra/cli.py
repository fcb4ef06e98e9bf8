"""`llm-platform`: see what a stack would create, offline, before anyone runs `pulumi up`."""

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from components.cold_start import describe
from infra.cost.cli import register as register_cost_commands
from infra.cost.estimate import preview_total
from infra.images.cli import app as images_app
from infra.loadtest.command import loadtest
from infra.models.cli import app as models_app
from infra.offline import SECRET_MASK, Graph, GraphResource, preview_stack
from infra.policy import policy_command, print_policy_summary
from infra.render import kubernetes_objects, write_manifests
from stacks.loader import ConfigError, stack_file
from stacks.placeholders import find_placeholders

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.command("policy")(policy_command)
app.command()(loadtest)
console = Console(emoji=False, highlight=False)
errors = Console(stderr=True, emoji=False, highlight=False)
app.add_typer(models_app, name="models", help="Publish model versions to the model bucket; promote and roll back.")
app.add_typer(images_app, name="images", help="Prefetch GPU-node images onto a Bottlerocket data-volume snapshot.")


@app.callback()
def main() -> None:
    """Offline tooling for the llm-platform Pulumi project."""


@app.command()
def preview(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Stack to preview: reads Pulumi.<stack>.yaml.")] = "dev",
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the whole resource graph to this file as JSON.")
    ] = None,
    project_dir: Annotated[
        Path, typer.Option("--project-dir", help="Folder holding Pulumi.yaml and the stack files.")
    ] = Path("."),
    render_dir: Annotated[
        Path | None,
        typer.Option("--render-k8s", help="Write every Kubernetes object the program declares here, one YAML each."),
    ] = None,
    policy: Annotated[bool, typer.Option(help="Also check the graph against the policy pack (summary).")] = True,
) -> None:
    """Run the stack's program under mocks and show every resource it declares, and its outputs."""
    try:
        graph = preview_stack(project_dir, stack)
    except ConfigError as error:
        errors.print(str(error), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    _print_tree(graph)
    _print_outputs(graph)
    console.print(preview_total(graph.to_json(), graph.config))
    for line in describe(graph.config.cold_start_budget(), *graph.config.gateway_timeouts()):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for placeholder in find_placeholders(graph.config):
        errors.print(f"warning: {placeholder.message(stack_file(project_dir, stack).name)}", markup=False,
                     soft_wrap=True)
    if json_file:
        json_file.write_text(json.dumps(graph.to_json(), indent=2, sort_keys=False) + "\n")
        console.print(f"graph written to {json_file} ({len(graph.resources)} resources)")
    if render_dir:
        written = write_manifests(kubernetes_objects(graph), render_dir)
        console.print(f"{len(written)} Kubernetes objects written to {render_dir}")
    if policy:
        print_policy_summary(graph.to_json(), graph.config)


def _print_tree(graph: Graph) -> None:
    by_parent: dict[str | None, list[GraphResource]] = {}
    for resource in graph.resources:
        by_parent.setdefault(resource.parent, []).append(resource)
    known = {resource.urn for resource in graph.resources}
    roots = [resource for resource in graph.resources if resource.parent not in known]

    def descendants(resource: GraphResource) -> int:
        return sum(1 + descendants(child) for child in by_parent.get(resource.urn, []))

    def add(branch: Tree, resource: GraphResource) -> None:
        kind = resource.type.rsplit(":", 1)[-1]
        count = descendants(resource)
        label = f"[bold]{escape(kind)}[/] {escape(resource.name)}" + (f" [dim]({count})[/]" if count else "")
        node = branch.add(label)
        for child in by_parent.get(resource.urn, []):
            add(node, child)

    tree = Tree(f"[bold]{graph.project}[/] / [bold]{graph.stack}[/]: {len(graph.resources)} resources")
    for root in sorted(roots, key=lambda resource: (resource.custom, resource.name)):
        add(tree, root)
    console.print(tree)

    table = Table(title="Resources per component")
    table.add_column("component")
    table.add_column("resources", justify="right")
    counts = Counter(
        root.name for root in roots for _ in range(1 + descendants(root))
    )
    for name, count in counts.most_common():
        table.add_row(name, str(count))
    console.print(table)


def _print_outputs(graph: Graph) -> None:
    table = Table(title="Stack outputs")
    table.add_column("output")
    table.add_column("value", overflow="fold")
    for name, value in graph.to_json()["outputs"].items():
        shown = value if value == SECRET_MASK or isinstance(value, str) else json.dumps(value)
        table.add_row(name, Text(str(shown)))
    console.print(table)


register_cost_commands(app)

if __name__ == "__main__":
    app()
