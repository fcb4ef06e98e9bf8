"""Turns the serving section of the config into the vLLM, gateway and app workloads."""

from typing import TYPE_CHECKING

import pulumi

from stacks.addons import AddonsOutputs

if TYPE_CHECKING:
    from stacks.platform import PlatformCore


def build_serving(core: "PlatformCore", addons: AddonsOutputs) -> dict[str, pulumi.Input[object]]:
    return {}
