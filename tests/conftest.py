"""Shared fixtures: the dev and prod stacks built once per test session by the offline engine."""

from pathlib import Path

import pytest

from infra.offline import Graph, preview_stack

PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def dev_graph() -> Graph:
    return preview_stack(PROJECT_DIR, "dev")


@pytest.fixture(scope="session")
def prod_graph() -> Graph:
    return preview_stack(PROJECT_DIR, "prod")


@pytest.fixture(scope="session", params=["dev", "prod"])
def graph(request: pytest.FixtureRequest, dev_graph: Graph, prod_graph: Graph) -> Graph:
    """Each stack in turn, for properties that must hold in both."""
    return dev_graph if request.param == "dev" else prod_graph
