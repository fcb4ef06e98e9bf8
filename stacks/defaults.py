"""Per-profile defaults, merged under what `Pulumi.<stack>.yaml` sets: dev is small and cheap, prod is HA."""

from typing import Any

from stacks.addons_config import ADDONS_PROFILE_DEFAULTS
from stacks.serving_config import SERVING_PROFILE_DEFAULTS

_CLOUD_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        "monthlyBudgetUsd": 500,
        "network": {"azCount": 2, "natGateways": "single", "flowLogRetentionDays": 14},
        "cluster": {
            "publicEndpoint": True,
            "systemNodes": {"instanceTypes": ["t3.large"], "minSize": 1, "desiredSize": 2, "maxSize": 3},
        },
        "cache": {"nodeType": "cache.t4g.micro", "replicas": 1, "snapshotRetentionDays": 0},
        "modelStore": {"noncurrentVersionExpirationDays": 7, "forceDestroy": True},
    },
    "prod": {
        "monthlyBudgetUsd": 1500,
        "network": {"azCount": 3, "natGateways": "per_az", "flowLogRetentionDays": 90},
        "cluster": {
            "publicEndpoint": False,
            "systemNodes": {"instanceTypes": ["m6i.xlarge"], "minSize": 3, "desiredSize": 3, "maxSize": 6},
        },
        "cache": {"nodeType": "cache.t4g.medium", "replicas": 2, "snapshotRetentionDays": 7},
        "modelStore": {"noncurrentVersionExpirationDays": 30, "forceDestroy": False},
    },
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` wins; nested mappings merge key by key, lists and scalars are replaced whole."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    profile: {**cloud, "addons": ADDONS_PROFILE_DEFAULTS[profile], "serving": SERVING_PROFILE_DEFAULTS[profile]}
    for profile, cloud in _CLOUD_PROFILE_DEFAULTS.items()
}
