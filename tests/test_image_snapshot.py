"""The GPU pool's image snapshot, checked before a deploy (stacks/image_snapshot.py): the program looks it up and
stops on what would break GPU nodes, and warns when it holds other images than the stack runs. The snapshot the
offline mocks describe is the one `llm-platform images snapshot` would build for the stack (its plan's tags)."""

import logging
from typing import Any

import pulumi
import pytest
from graph_helpers import prod_values

from infra.images.plan import make_plan
from infra.mocks import ACCOUNT_ID, PlatformMocks
from infra.offline import Graph, build_graph
from stacks.loader import as_engine_config, validate

KEY = "llm-platform:addons.karpenter.gpuPool.imageSnapshotId: snap-1234567890abcdef0"


def _build(snapshot: dict[str, Any]) -> Graph:
    values = prod_values({})
    config = validate("prod", values, "t")
    return build_graph(config, "prod", as_engine_config(values), PlatformMocks(config.region, snapshot=snapshot))


def _builder_tags() -> dict[str, str]:
    config = validate("prod", prod_values({}), "t")
    return make_plan(config, "prod", ACCOUNT_ID, "g4dn.xlarge", "subnet-0a1b2c3d", None).tags


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the program logged as warnings (under mocks, Pulumi's engine log goes to Python logging)."""
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_the_snapshot_the_builder_makes_for_the_stack_passes_quietly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        graph = _build({"tags": _builder_tags()})
    assert graph.resources
    assert not [w for w in _warnings(caplog) if "imageSnapshotId" in w]


def test_a_snapshot_of_other_images_warns_and_still_deploys(caplog: pytest.LogCaptureFixture) -> None:
    """A vLLM upgrade since the snapshot was built: nodes would pull, so the start is over budget; not fatal."""
    tags = _builder_tags() | {"llm-platform:images-sha256": "0" * 64}
    with caplog.at_level(logging.WARNING):
        assert _build({"tags": tags}).resources
    (warning,) = [w for w in _warnings(caplog) if "imageSnapshotId" in w]
    assert warning.startswith(f"{KEY} holds other images than this stack's GPU pods run")
    assert "llm-platform images snapshot --stack" in warning


@pytest.mark.parametrize(
    ("snapshot", "said"),
    [
        ({"encrypted": False}, "is not encrypted"),
        ({"state": "pending"}, "is pending, not completed"),
        # Prod's GPU data volume is 200 GiB (gpuPool.rootVolumeGib's default).
        ({"volumeSize": 250}, "is of a 250 GiB volume, larger than gpuPool.rootVolumeGib 200"),
    ],
)
def test_a_snapshot_nodes_could_not_use_stops_the_deploy(snapshot: dict[str, Any], said: str) -> None:
    with pytest.raises(pulumi.RunError) as raised:
        _build({"tags": _builder_tags(), **snapshot})
    assert str(raised.value).startswith(f"{KEY} {said}")
