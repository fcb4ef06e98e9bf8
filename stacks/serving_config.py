"""Typed configuration of the workloads: vLLM, the gateway and extra app services."""

from typing import Any

from stacks.config_base import StrictModel


class ServingConfig(StrictModel):
    pass


SERVING_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {"dev": {}, "prod": {}}
