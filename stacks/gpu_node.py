"""The GPU node Karpenter launches for one vLLM pod of a stack, and its hourly price: one answer for the cost
alert (stacks/addons.py) and the cost model and simulator (infra/cost/)."""

from components.kube import quantity_value
from components.pricing import Catalog, InstanceSpec, load_catalog
from stacks.config import PlatformConfig

GIB = 2.0**30


def gpu_node(config: PlatformConfig, catalog: Catalog) -> tuple[InstanceSpec, str]:
    """The GPU type and capacity Karpenter launches for one vLLM pod of this stack."""
    pool, vllm = config.addons.karpenter.gpu_pool, config.serving.vllm
    return catalog.cheapest_fit(
        pool.families, list(pool.capacity_types), quantity_value(vllm.resources.cpu_request),
        quantity_value(vllm.resources.memory_request) / GIB, vllm.gpus_per_pod,
    )


def gpu_node_hourly_usd(config: PlatformConfig) -> float:
    """Price of one GPU node-hour for this stack, from the catalog: the cost alert's and the cost model's price."""
    catalog = load_catalog(config.region)
    spec, capacity = gpu_node(config, catalog)
    return catalog.instance_hourly(spec.name, capacity)
