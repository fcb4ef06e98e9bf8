"""Per-profile defaults, merged under what `Pulumi.<stack>.yaml` sets: dev is small and cheap, prod is HA.

Keys are spelled as in the stack file. Sizing follows seed 000: a 7B model on one 24 GB GPU with short contexts
and a handful of concurrent sequences.
"""

from typing import Any

from components.versions import CPU_AMI_ALIAS_DEV, CPU_AMI_ALIAS_PROD, GPU_AMI_ALIAS_DEV, GPU_AMI_ALIAS_PROD

PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        # `llm-platform cost --stack dev`: about 655 USD a month under the dev traffic profile (1/20 of seed 000).
        "monthlyBudgetUsd": 750,
        "network": {"azCount": 2, "natGateways": "single", "flowLogRetentionDays": 14},
        "cluster": {
            "publicEndpoint": True,
            "systemNodes": {"instanceTypes": ["t3.large"], "minSize": 1, "desiredSize": 2, "maxSize": 3},
        },
        "cache": {"nodeType": "cache.t4g.micro", "replicas": 1, "snapshotRetentionDays": 0},
        "modelStore": {"noncurrentVersionExpirationDays": 7, "forceDestroy": True},
        "addons": {
            "karpenter": {
                "controllerReplicas": 1,
                "gpuPool": {
                    "instanceFamilies": ["g6", "g5"],
                    "capacityTypes": ["spot"],
                    "cpuLimit": 32,
                    "memoryLimitGib": 128,
                    "gpuLimit": 2,
                    "amiAlias": GPU_AMI_ALIAS_DEV,
                    "requirePinnedAmi": False,
                },
                "cpuPool": {
                    "capacityTypes": ["spot"],
                    "cpuLimit": 16,
                    "memoryLimitGib": 64,
                    "amiAlias": CPU_AMI_ALIAS_DEV,
                    "requirePinnedAmi": False,
                },
            },
            "keda": {"operatorReplicas": 1},
            "logs": {"enabled": True, "retentionDays": 7},
            "observability": {
                "retention": "3d",
                "prometheusReplicas": 1,
                "baseMonthlyUsd": 420,  # `llm-platform cost --stack dev`: modelled non-GPU month
            },
        },
        "serving": {
            "vllm": {"minReplicas": 0, "maxReplicas": 2},
            "scaling": {"activation": "gateway", "cooldownPeriodS": 300},
            "gateway": {"minReplicas": 1, "maxReplicas": 2, "workers": 1},
        },
        # A team trying the platform: seed 000's day shape at a twentieth of its request rates.
        "traffic": {"levels": {"idle": 0.0, "low": 0.3, "medium": 0.8, "high": 1.4, "peak": 1.8}},
    },
    "prod": {
        "monthlyBudgetUsd": 4000,
        "network": {"azCount": 3, "natGateways": "per_az", "flowLogRetentionDays": 90},
        "cluster": {
            # Public endpoint restricted to publicAccessCidrs: the first deploy runs from outside the new VPC.
            "publicEndpoint": True,
            "systemNodes": {"instanceTypes": ["m6i.xlarge"], "minSize": 3, "desiredSize": 3, "maxSize": 6},
        },
        "cache": {"nodeType": "cache.t4g.medium", "replicas": 2, "snapshotRetentionDays": 7},
        "modelStore": {"noncurrentVersionExpirationDays": 30, "forceDestroy": False},
        "addons": {
            "karpenter": {
                "controllerReplicas": 2,
                "gpuPool": {
                    "instanceFamilies": ["g6", "g5", "g6e"],
                    "capacityTypes": ["spot", "on-demand"],
                    "cpuLimit": 256,
                    "memoryLimitGib": 1024,
                    "gpuLimit": 16,
                    "amiAlias": GPU_AMI_ALIAS_PROD,
                    "requirePinnedAmi": True,
                },
                "cpuPool": {
                    "capacityTypes": ["spot", "on-demand"],
                    "cpuLimit": 64,
                    "memoryLimitGib": 256,
                    "amiAlias": CPU_AMI_ALIAS_PROD,
                    "requirePinnedAmi": True,
                },
            },
            "keda": {"operatorReplicas": 2},
            "logs": {"enabled": True, "retentionDays": 30},
            "tracing": {"enabled": True, "sampleRatio": 0.05},
            # Prod pages someone: create this secret before the first `pulumi up` (README, "Alert routing").
            "alerting": {
                "critical": {"kind": "pagerduty"},
                "warning": {"kind": "slack"},
                "secretId": "llm-platform/prod/alerting",
            },
            "observability": {
                "retention": "15d",
                # Survives restarts: 15 days of a few thousand series fit well under 100 GiB (retentionSize 85 %).
                "storageGib": 100,
                "grafanaStorageGib": 10,
                "prometheusReplicas": 2,
                # Pages survive a node loss (two gossiping instances) and restarts (silences, notification log).
                "alertmanagerReplicas": 2,
                "alertmanagerStorageGib": 2,
                "baseMonthlyUsd": 1050,  # `llm-platform cost --stack prod`: modelled non-GPU month
            },
        },
        "serving": {
            # Seed 000's traffic (the default profile) peaks at 36 requests/s: `llm-platform simulate --stack prod`
            # times out 30 % of requests at 6 pods and 11 % at 10; 16 keep TTFT p95 under seed 002's 0.5 s.
            # A new node loads compiled graphs from the model bucket (docs/cold-start.md): the warm start fits 60 s.
            "vllm": {"minReplicas": 1, "maxReplicas": 16, "sharedCompileCache": True},
            "scaling": {
                "activation": "gateway",
                "fallbackReplicas": 2,
                "cooldownPeriodS": 600,
                "gpuUtilizationPercent": 85,
            },
            # A GPU node up, image pulled, through business hours in the region's time zone (us-west-2).
            "warmCapacity": {"enabled": True, "timezone": "America/Los_Angeles", "start": "0 8 * * 1-5",
                             "end": "0 18 * * 1-5"},
            "gateway": {
                "minReplicas": 2,
                "maxReplicas": 6,
                "workers": 2,
                "resources": {"cpuRequest": "500m", "memoryRequest": "512Mi", "cpuLimit": "2", "memoryLimit": "1Gi"},
            },
        },
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
