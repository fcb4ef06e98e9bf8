"""What a user reads before the first `pulumi up`: the tools it runs, and where each value to fill in is explained."""

import json
import re
from pathlib import Path

from infra.offline import Graph
from stacks.placeholders import WHAT_BELONGS

PROJECT_DIR = Path(__file__).resolve().parent.parent
# pulumi-eks writes a kubeconfig whose user runs `aws eks get-token` (nodejs/eks/cluster/cluster.ts,
# generateKubeconfig): the Kubernetes provider, and so `pulumi up`, needs the AWS CLI.
TOOLS_BY_COMMAND = {"aws": "AWS CLI"}


def readme_section(title: str) -> str:
    text = (PROJECT_DIR / "README.md").read_text()
    return re.search(rf"^## {title}\n(.*?)(?=^## )", text, re.S | re.M).group(1)  # type: ignore[union-attr]


def test_readme_lists_the_tools_a_deploy_runs(dev_graph: Graph) -> None:
    prerequisites = readme_section("Deploying for real")
    commands = {user["user"]["exec"]["command"] for user in json.loads(dev_graph.outputs["kubeconfig"])["users"]}
    assert commands == {"aws"}
    for command in commands:
        assert TOOLS_BY_COMMAND[command] in prerequisites
    assert "Pulumi CLI" in prerequisites and "docs/deploy.md" in prerequisites


def test_deploy_guide_explains_every_value_a_user_fills_in() -> None:
    guide = (PROJECT_DIR / "docs" / "deploy.md").read_text()
    for key in WHAT_BELONGS:
        assert f"`{key}`" in guide or f"`{key.rsplit('.', 1)[0]}`" in guide, key
    for step in ("pulumi install", "pulumi up -s dev", "pulumi up -s prod", "pulumi destroy"):
        assert step in guide
    # The other deploy-readiness branches fill these in.
    assert "### Images" in guide and "### Model weights (prod)" in guide
