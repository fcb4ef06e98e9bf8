"""Typed configuration of the cluster add-ons: Karpenter and its node pools, NVIDIA, KEDA, Prometheus."""

from typing import Any

from stacks.config_base import StrictModel


class AddonsConfig(StrictModel):
    pass


ADDONS_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {"dev": {}, "prod": {}}
