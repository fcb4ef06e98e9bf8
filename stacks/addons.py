"""Turns the add-ons section of the config into Karpenter, node pools, NVIDIA, KEDA and Prometheus."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pulumi

if TYPE_CHECKING:
    from stacks.platform import PlatformCore


@dataclass(frozen=True)
class AddonsOutputs:
    """What workloads need from the add-ons."""

    prometheus_url: str
    # Releases that install CRDs (Karpenter, KEDA, prometheus-operator): custom resources depend on them.
    crd_providers: list[pulumi.Resource] = field(default_factory=list)
    outputs: dict[str, pulumi.Input[object]] = field(default_factory=dict)


def build_addons(core: "PlatformCore") -> AddonsOutputs:
    return AddonsOutputs(prometheus_url="")
