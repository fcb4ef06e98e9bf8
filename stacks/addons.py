"""Turns the add-ons section of the config into Karpenter, node pools, NVIDIA, KEDA and Prometheus."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from components import contracts
from components.cold_start_monitoring import ColdStartMonitoring, ColdStartMonitoringArgs
from components.dashboards import Dashboards, DashboardsArgs
from components.gpu_metrics import GpuMetrics, GpuMetricsArgs
from components.image_cache import ImageCache, ImageCacheArgs
from components.karpenter import Karpenter, KarpenterArgs
from components.keda import Keda, KedaArgs
from components.log_shipping import LogShipping, LogShippingArgs
from components.node_pools import NodePools, NodePoolsArgs
from components.nvidia import NvidiaArgs, NvidiaDevicePlugin
from components.observability import Observability, ObservabilityArgs
from components.slo import ServiceLevels, ServiceLevelsArgs
from components.storage import BlockStorage, BlockStorageArgs
from components.tracing import Tracing, TracingArgs
from components.versions import VLLM_IMAGE
from stacks.gpu_images import vllm_pod_image
from stacks.gpu_node import gpu_node_hourly_usd
from stacks.image_snapshot import check_image_snapshot

if TYPE_CHECKING:
    from stacks.platform import PlatformCore


@dataclass(frozen=True)
class AddonsOutputs:
    """What workloads need from the add-ons."""

    prometheus_url: str
    # Releases that install CRDs (Karpenter, KEDA, prometheus-operator): custom resources depend on them.
    crd_providers: list[pulumi.Resource] = field(default_factory=list)
    # What must exist before pods can be scheduled on each pool (its NodePool; for GPUs also the device plugin).
    gpu_capacity: list[pulumi.Resource] = field(default_factory=list)
    cpu_capacity: list[pulumi.Resource] = field(default_factory=list)
    # The vLLM image as GPU nodes pull it: through the ECR pull-through cache when one is configured.
    vllm_image: pulumi.Input[str] = VLLM_IMAGE
    outputs: dict[str, pulumi.Input[object]] = field(default_factory=dict)


def build_addons(core: "PlatformCore") -> AddonsOutputs:
    config = core.config.addons
    provider = core.cluster.provider
    system_ready = core.cluster.system_ready
    on_aws = pulumi.ResourceOptions(providers=[core.aws_provider])
    account_id = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=core.aws_provider)).account_id
    check_image_snapshot(core.config, account_id, core.aws_provider)

    karpenter = Karpenter(
        "karpenter",
        KarpenterArgs(
            cluster_name=core.cluster.cluster_name,
            region=core.config.region,
            account_id=account_id,
            controller_replicas=config.karpenter.controller_replicas,
            kubernetes_provider=provider,
            system_ready=system_ready,
        ),
        on_aws,
    )
    pools = NodePools(
        "node-pools",
        NodePoolsArgs(
            gpu_pool=config.karpenter.gpu_pool,
            cpu_pool=config.karpenter.cpu_pool,
            cluster_name=core.cluster.cluster_name,
            node_role_name=karpenter.node_role_name,
            kubernetes_provider=provider,
            tags=core.tags,
            depends_on=[karpenter.crds, karpenter.controller],
        ),
    )
    gpu_capacity: list[pulumi.Resource] = [pools.gpu_pool]
    if config.karpenter.gpu_pool.needs_device_plugin:
        plugin = NvidiaDevicePlugin(
            "nvidia-device-plugin", NvidiaArgs(kubernetes_provider=provider, system_ready=system_ready)
        )
        gpu_capacity.append(plugin.release)
    keda = Keda(
        "keda",
        KedaArgs(
            operator_replicas=config.keda.operator_replicas, kubernetes_provider=provider, system_ready=system_ready
        ),
    )
    storage = BlockStorage(
        "block-storage",
        BlockStorageArgs(
            cluster_name=core.cluster.cluster_name, kubernetes_provider=provider, system_ready=system_ready
        ),
        on_aws,
    )
    # One price for a GPU node-hour, from the cost catalog: the budget alert, the SLO cost rules and `cost` agree.
    gpu_hourly_usd = gpu_node_hourly_usd(core.config)
    observability = Observability(
        "observability",
        ObservabilityArgs(
            config=config.observability,
            monthly_budget_usd=core.config.monthly_budget_usd,
            gpu_node_hourly_usd=gpu_hourly_usd,
            kubernetes_provider=provider,
            system_ready=system_ready,
            alerting=config.alerting,
            aws_provider=core.aws_provider,
            depends_on=[storage.storage_class],
        ),
    )
    ServiceLevels(
        "slo",
        ServiceLevelsArgs(
            config=config.slo,
            gpu_node_hourly_usd=gpu_hourly_usd,
            gpu_floor=core.config.serving.vllm.min_replicas,
            kubernetes_provider=provider,
            depends_on=[observability.release],
        ),
    )
    GpuMetrics(
        "gpu-metrics",
        GpuMetricsArgs(
            kubernetes_provider=provider,
            depends_on=[observability.release],
            ami_family=config.karpenter.gpu_pool.ami_family,
        ),
    )
    Dashboards(
        "dashboards",
        DashboardsArgs(
            base_monthly_usd=config.observability.base_monthly_usd,
            kubernetes_provider=provider,
            depends_on=[observability.release],
        ),
    )
    if config.tracing.enabled:
        Tracing(
            "tracing",
            TracingArgs(
                region=core.config.region,
                cluster_name=core.cluster.cluster_name,
                kubernetes_provider=provider,
                depends_on=[observability.release],
            ),
            on_aws,
        )
    logs = (
        LogShipping(
            "logs",
            LogShippingArgs(
                config=config.logs,
                log_group_name=f"/{core.project}/{core.stack}/containers",
                region=core.config.region,
                cluster_name=core.cluster.cluster_name,
                kubernetes_provider=provider,
                system_ready=system_ready,
            ),
            on_aws,
        )
        if config.logs.enabled
        else None
    )
    if config.image_cache.docker_hub_credential_arn:
        ImageCache(
            "image-cache",
            ImageCacheArgs(
                credential_arn=config.image_cache.docker_hub_credential_arn,
                account_id=account_id,
                region=core.config.region,
                node_role_name=karpenter.node_role_name,
            ),
            pulumi.ResourceOptions(providers=[core.aws_provider]),
        )
    ColdStartMonitoring(
        "cold-start-monitoring",
        ColdStartMonitoringArgs(
            budget=core.config.cold_start_budget(),
            namespace=contracts.MONITORING_NAMESPACE,
            kubernetes_provider=provider,
            metrics_release=observability.release,
        ),
    )
    return AddonsOutputs(
        prometheus_url=observability.prometheus_url,
        crd_providers=[karpenter.crds, keda.release, observability.release],
        gpu_capacity=gpu_capacity,
        cpu_capacity=[pools.cpu_pool],
        vllm_image=vllm_pod_image(core.config, account_id),
        outputs={
            "karpenterInterruptionQueue": karpenter.queue_name,
            "karpenterControllerRoleArn": karpenter.controller_role_arn,
            "karpenterNodeRoleArn": karpenter.node_role_arn,
            "prometheusUrl": observability.prometheus_url,
            "grafanaAccess": observability.grafana_access,
            **({"containerLogGroup": logs.log_group_name} if logs else {}),
        },
    )
