"""KEDA: the operator that turns the serving ScaledObjects' Prometheus queries into HPA metrics."""

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.cluster import SYSTEM_NODE_LABEL
from components.helm import pinned_release
from components.versions import KEDA

KEDA_NAMESPACE = "keda"
KEDA_PODS = ("operator", "metricServer", "webhooks")
# The chart sets a 1-CPU limit on each pod (keda values.yaml); a throttled metrics server delays every HPA read
# of the serving metrics, so the limit goes. Helm merges maps key by key: only a `null` removes a chart default,
# and the Python SDK drops nulls from `values` (pulumi/pulumi#12178), so the null travels in a values file.
NO_CPU_LIMITS = yaml.safe_dump({"resources": {pod: {"limits": {"cpu": None}} for pod in KEDA_PODS}})


@dataclass(frozen=True)
class KedaArgs:
    operator_replicas: int
    kubernetes_provider: k8s.Provider
    # The system node group and the Pod Identity agent: what its pods need to run and get AWS credentials.
    system_ready: list[pulumi.Resource]


class Keda(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: KedaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Keda", name, None, opts)
        self.release = pinned_release(
            name,
            KEDA,
            KEDA_NAMESPACE,
            {
                # Scaling decisions must survive GPU and CPU pools scaling to zero: run on the system nodes.
                "nodeSelector": SYSTEM_NODE_LABEL,
                "operator": {"replicaCount": args.operator_replicas},
                "metricsServer": {"replicaCount": args.operator_replicas},
                "webhooks": {"replicaCount": args.operator_replicas},
                "resources": {
                    "operator": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                    "metricServer": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                    "webhooks": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                },
            },
            pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=args.system_ready),
            value_yaml_files=[pulumi.StringAsset(NO_CPU_LIMITS)],
            # Operator, metrics server and admission webhooks: three Deployments pulled onto the system nodes.
            timeout_s=600,
        )
        self.register_outputs({})
