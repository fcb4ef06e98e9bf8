"""Add-on configuration: per-profile defaults, and clear errors for pools that cannot work."""

from pathlib import Path

import pytest

from components.node_pools import GpuPoolConfig
from stacks.defaults import deep_merge
from stacks.loader import ConfigError, load_stack_file, validate

PROJECT_DIR = Path(__file__).resolve().parent.parent
VALID_DEV = {"cluster": {"publicAccessCidrs": ["198.51.100.0/24"]}}


def error_for(addons: dict, stack: str = "dev") -> str:
    with pytest.raises(ConfigError) as raised:
        validate(stack, deep_merge(VALID_DEV, {"addons": addons}), "Pulumi.test.yaml")
    return str(raised.value)


def test_profiles_differ_as_configured() -> None:
    dev = load_stack_file(PROJECT_DIR, "dev").addons
    prod = load_stack_file(PROJECT_DIR, "prod").addons
    assert dev.karpenter.gpu_pool.capacity_types == ["spot"]
    assert prod.karpenter.gpu_pool.capacity_types == ["spot", "on-demand"]
    for pool in ("gpu_pool", "cpu_pool"):
        assert getattr(dev.karpenter, pool).ami_alias.endswith("@latest")
        assert not getattr(prod.karpenter, pool).ami_alias.endswith("@latest")
    assert (dev.karpenter.controller_replicas, prod.karpenter.controller_replicas) == (1, 2)
    assert (dev.keda.operator_replicas, prod.keda.operator_replicas) == (1, 2)


@pytest.mark.parametrize("pool", ["gpuPool", "cpuPool"])
def test_prod_must_pin_the_ami_of_each_pool(pool: str) -> None:
    message = error_for({"karpenter": {pool: {"amiAlias": "al2023@latest"}}}, stack="prod")
    assert f"llm-platform:addons.karpenter.{pool}" in message
    assert "prod pins its AMIs" in message and "(awslabs/amazon-eks-ami) or bottlerocket@v" in message


def test_an_al2023_pin_must_name_a_dated_release() -> None:
    message = error_for({"karpenter": {"cpuPool": {"amiAlias": "al2023@v1.2"}}}, stack="prod")
    assert "llm-platform:addons.karpenter.cpuPool.amiAlias" in message


def test_instance_family_without_gpu_is_rejected_with_the_allowed_ones() -> None:
    message = error_for({"karpenter": {"gpuPool": {"instanceFamilies": ["g6", "m7i"]}}})
    assert "'m7i' has no NVIDIA GPU" in message and "g6e" in message


def test_instance_types_are_checked_by_their_family() -> None:
    message = error_for({"karpenter": {"gpuPool": {"instanceTypes": ["c7i.4xlarge"]}}})
    assert "'c7i' has no NVIDIA GPU" in message


def test_gpu_consolidation_under_15_minutes_is_rejected() -> None:
    message = error_for({"karpenter": {"gpuPool": {"consolidateAfter": "5m"}}})
    assert "consolidateAfter 5m is under 15m" in message


def test_unknown_capacity_type_names_the_allowed_values() -> None:
    message = error_for({"karpenter": {"gpuPool": {"capacityTypes": ["reserved"]}}})
    assert "addons.karpenter.gpuPool.capacityTypes.0" in message and "'spot' or 'on-demand'" in message


def test_ami_alias_must_be_al2023_or_bottlerocket() -> None:
    message = error_for({"karpenter": {"gpuPool": {"amiAlias": "al2@latest"}}})
    assert "addons.karpenter.gpuPool.amiAlias" in message


def test_device_plugin_only_where_the_ami_lacks_one() -> None:
    assert GpuPoolConfig(ami_alias="al2023@latest").needs_device_plugin
    assert not GpuPoolConfig(ami_alias="bottlerocket@latest").needs_device_plugin
