"""Turns the serving section of the config into the vLLM, gateway and app workloads."""

from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s

from components import contracts
from components.apps import Apps, AppsArgs
from components.gateway import Gateway, GatewayArgs
from components.images import BuildConfig, BuiltImage, BuiltImageArgs
from components.tracing import gateway_env
from components.versions import AWS_CLI_IMAGE
from components.vllm import VllmArgs, VllmServer
from components.warm_capacity import WarmCapacity, WarmCapacityArgs
from stacks.addons import AddonsOutputs
from stacks.config import GATEWAY_BUILD, PROJECT_ROOT

if TYPE_CHECKING:
    from stacks.platform import PlatformCore


def image_for(
    core: "PlatformCore", name: str, image: str | None, build: BuildConfig | None
) -> pulumi.Input[str]:
    """The configured image; without one, the stack builds `build` into its own ECR repository and runs the digest."""
    if image is not None:
        return image
    if build is None:
        raise ValueError(f"{name}: neither an image nor a build (the config validation rules this out)")
    built = BuiltImage(
        f"{name}-image",
        BuiltImageArgs(
            repository_name=f"{core.project}-{core.stack}/{name}",
            context=PROJECT_ROOT / build.context,
            dockerfile=PROJECT_ROOT / build.context / build.dockerfile,
            force_delete=not core.config.production,
        ),
        pulumi.ResourceOptions(providers=[core.aws_provider]),
    )
    return built.image


def build_serving(core: "PlatformCore", addons: AddonsOutputs) -> dict[str, pulumi.Input[object]]:
    config = core.config.serving
    provider = core.cluster.provider
    on_aws = pulumi.ResourceOptions(providers=[core.aws_provider])
    namespace = k8s.core.v1.Namespace(
        "serving-namespace",
        metadata={"name": contracts.SERVING_NAMESPACE, "labels": {"pod-security.kubernetes.io/warn": "baseline"}},
        opts=pulumi.ResourceOptions(provider=provider),
    )

    vllm = VllmServer(
        "vllm",
        VllmArgs(
            config=config.vllm,
            scaling=config.scaling,
            namespace=namespace.metadata.name,
            namespace_name=contracts.SERVING_NAMESPACE,
            region=core.config.region,
            cluster_name=core.cluster.cluster_name,
            model_bucket=core.model_store.bucket_name,
            reader_role_arn=core.model_store.reader_role_arn,
            prometheus_url=addons.prometheus_url,
            kubernetes_provider=provider,
            cold_start=core.config.cold_start_budget(),
            crd_providers=addons.crd_providers,
            capacity=addons.gpu_capacity,
            image=addons.vllm_image,
            gpu_families=core.config.addons.karpenter.gpu_pool.families,
            node_cache_dir=core.config.addons.karpenter.gpu_pool.node_cache_dir,
        ),
        on_aws,
    )
    if config.warm_capacity.enabled:
        WarmCapacity(
            "warm-capacity",
            WarmCapacityArgs(
                config=config.warm_capacity,
                gpus_per_pod=config.vllm.gpus_per_pod,
                paused=not config.vllm.published,
                vllm_image=addons.vllm_image,
                sync_image=AWS_CLI_IMAGE if config.vllm.shared_compile_cache else None,
                kubernetes_provider=provider,
                crd_providers=addons.crd_providers,
                capacity=addons.gpu_capacity,
            ),
        )
    gateway = Gateway(
        "gateway",
        GatewayArgs(
            config=core.config.resolved_gateway(),
            image=image_for(core, "gateway", config.gateway.image, GATEWAY_BUILD),
            namespace=namespace.metadata.name,
            namespace_name=contracts.SERVING_NAMESPACE,
            upstream_url=vllm.url,
            models=f"{config.vllm.name_for_clients}={config.vllm.max_model_len}",
            redis_endpoint=core.cache.primary_endpoint,
            redis_port=core.cache.port,
            redis_auth_token=core.cache.auth_token,
            kubernetes_provider=provider,
            load_balancer_name=core.edge.gateway_load_balancer_name,
            capacity=addons.cpu_capacity,
            load_balancer_controller=core.edge.controller,
            domain=core.config.edge.domain,
            certificate_arn=core.edge.certificate_arn,
            web_acl_arn=core.edge.web_acl_arn,
            extra_env=gateway_env(core.config.addons.tracing),
        ),
        on_aws,
    )
    core.edge.route_domain(gateway.ingress)
    if config.apps:
        Apps(
            "apps",
            AppsArgs(
                apps=config.apps,
                images={app.name: image_for(core, app.name, app.image, app.build) for app in config.apps},
                namespace=namespace.metadata.name,
                gateway_url=gateway.in_cluster_url,
                kubernetes_provider=provider,
                capacity=addons.cpu_capacity,
            ),
        )
    return {
        "gatewayUrl": gateway.url,
        "gatewayLoadBalancer": gateway.load_balancer_hostname,
        "vllmUrl": vllm.url,
        "servedModelName": config.vllm.name_for_clients,
    }
