"""Serving configuration: defaults per profile and one-line errors naming the key."""

import pytest

from stacks.loader import ConfigError, validate

SHA = "a" * 64
# The dev profile opens the API endpoint, which needs an allow-list.
DEV = {"cluster": {"publicAccessCidrs": ["203.0.113.0/24"]}}


def test_min_zero_without_gateway_activation_is_rejected() -> None:
    with pytest.raises(ConfigError) as error:
        serving = {"vllm": {"minReplicas": 0}, "scaling": {"activation": "none"}}
        validate("dev", {**DEV, "serving": serving}, "Pulumi.dev.yaml")
    assert str(error.value).startswith("Pulumi.dev.yaml: llm-platform:serving: vllm.minReplicas is 0")
    assert "scaling.activation: gateway" in str(error.value)


def test_min_one_without_activation_is_accepted() -> None:
    config = validate("dev", {**DEV, "serving": {"vllm": {"minReplicas": 1}, "scaling": {"activation": "none"}}}, "x")
    assert config.serving.scaling.activation == "none"


@pytest.mark.parametrize(
    ("serving", "key", "message"),
    [
        ({"vllm": {"gpuMemoryUtilization": 0.99}}, "serving.vllm.gpuMemoryUtilization", "less than or equal to 0.95"),
        ({"vllm": {"quantization": "awq4"}}, "serving.vllm.quantization", "'awq_marlin'"),
        # vLLM 0.33 has no bitsandbytes method (components/upstream/vllm.json): refused before any deploy.
        ({"vllm": {"quantization": "bitsandbytes"}}, "serving.vllm.quantization", "'awq_marlin'"),
        ({"vllm": {"generationConfig": "model"}}, "serving.vllm.generationConfig", "'auto'"),
        ({"vllm": {"maxNumSeq": 8}}, "serving.vllm.maxNumSeq", "unknown key"),
        ({"gateway": {"apiKeys": [{"id": "team-a", "sha256": "abc"}]}}, "serving.gateway.apiKeys.0.sha256", "pattern"),
        ({"gateway": {"idleTimeoutS": 120, "holdTimeoutS": 300}}, "serving.gateway", "idleTimeoutS 120"),
        ({"gateway": {"workers": 4, "localCacheMb": 256}}, "serving.gateway", "1024 MiB is over half of"),
        ({"gateway": {"rateLimitLeasePercent": 20}}, "serving.gateway.rateLimitLeasePercent", "less than or equal"),
        ({"apps": [{"name": "web", "image": "web:latest", "port": 80}]}, "serving.apps.0.image", "pinned"),
        ({"gateway": {"image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/gateway"}}, "serving.gateway.image",
         "pinned"),
    ],
)
def test_bad_serving_config_names_the_key(serving: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate("prod", {"serving": serving}, "Pulumi.prod.yaml")
    line = str(error.value)
    assert f"llm-platform:{key}: " in line and message in line and "\n" not in line


def test_profiles_differ_as_designed() -> None:
    dev = validate("dev", DEV, "x").serving
    prod = validate("prod", {}, "x").serving
    assert dev.vllm.min_replicas == 0 and dev.scaling.activation == "gateway"
    assert prod.vllm.min_replicas >= 1 and prod.gateway.min_replicas >= 2
    assert prod.scaling.fallback_replicas and not dev.scaling.fallback_replicas
    assert dev.apps == prod.apps == [], "apps are the user's own: stack files declare them, profiles do not"


def test_api_keys_render_hashes_only() -> None:
    keys = [{"id": "team-a", "sha256": SHA, "rpm": 60}]
    config = validate("dev", {**DEV, "serving": {"gateway": {"apiKeys": keys}}}, "x")
    assert config.serving.gateway.api_keys[0].model_dump(exclude_none=True) == {"id": "team-a", "sha256": SHA,
                                                                                 "rpm": 60}
