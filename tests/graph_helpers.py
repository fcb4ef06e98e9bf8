"""Lookups several test files make in the offline graph, and the stack files they start from."""

import json
import shutil
from pathlib import Path
from typing import Any

from infra.offline import Graph
from stacks.defaults import deep_merge
from stacks.loader import read_stack_file, stack_file

PROJECT_DIR = Path(__file__).resolve().parent.parent


def prod_values(change: dict[str, Any]) -> dict[str, Any]:
    """Pulumi.prod.yaml's keys with `change` merged in."""
    return deep_merge(read_stack_file(stack_file(PROJECT_DIR, "prod")), change)


def copy_stack_files(directory: Path) -> Path:
    """`directory` holding a copy of the project's Pulumi.yaml and stack files, for commands that edit them."""
    directory.mkdir()
    for path in PROJECT_DIR.glob("Pulumi*.yaml"):
        shutil.copy(path, directory / path.name)
    return directory


def pod_identity_grant(graph: Graph, release: str, role: str) -> dict[str, Any]:
    """The one inline-policy statement of a Pod Identity role, after checking that its association names the
    service account and namespace the Helm release runs."""
    values = graph.one("kubernetes:helm.sh/v3:Release", release).inputs
    association = graph.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", role).inputs
    assert (association["namespace"], association["serviceAccount"]) == (
        values["namespace"], values["values"]["serviceAccount"]["name"]
    )
    (statement,) = json.loads(graph.one("aws:iam/rolePolicy:RolePolicy", role).inputs["policy"])["Statement"]
    return statement
