"""The torch.compile cache shared across GPU nodes (`serving.vllm.sharedCompileCache`): a prefix of the model
bucket that an init container syncs into vLLM's cache directory before vLLM starts, and that a sidecar fills once
vLLM serves. A pod on a new node then loads compiled graphs instead of compiling (seed 004: 7.8 s, not 60 s).

The prefix is keyed so a cache is only found where it is valid: vLLM version, model, the GPU pool's instance
families, tensor-parallel size and a hash of the `vllm serve` flags that enter vLLM's own cache key. Inside it,
vLLM 0.33 keys each compiled graph by its own hash (vLLM config incl. version, model and parallel config; its
environment; the traced source; torch/Triton/CUDA and the GPU's device name), so two GPU types of one pool keep
separate directories under the same prefix and a pod only loads its own (components/upstream/vllm-runtime.json).

Write-back is a sidecar, not a preStop hook: it uploads as soon as vLLM answers /health, so the next node finds the
cache minutes later, not when this pod ends; a Spot reclaim or a node failure would never run a preStop hook.
"""

import hashlib
import json
from typing import Any

from components import contracts
from components.versions import AWS_CLI_IMAGE, VLLM_VERSION

# The model bucket's prefix for compile caches: the serving role may write here and nowhere else.
BUCKET_PREFIX = "compile-cache"
# VLLM_CACHE_ROOT/<this> is what vLLM 0.33 compiles into (compilation/backends.py, decorators.py).
TORCH_COMPILE_DIR = "torch_compile_cache"
# `vllm serve` flags (with a value) that vLLM 0.33 leaves out of its compile cache key: server settings, the name
# clients send (ModelConfig.compute_hash ignores served_model_name), gpu_memory_utilization (CacheConfig ignores it).
# Everything else is hashed into the prefix: a new value there is a new cache, never a wrong one.
RUNTIME_ONLY_FLAGS = ("--host", "--port", "--served-model-name", "--shutdown-timeout", "--gpu-memory-utilization")
# The aws-cli image (Amazon Linux 2023) runs as root: the cache directory on the node is vLLM's, which runs as root.
SYNC_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
                 "runAsUser": 0}
SYNC_RESOURCES = {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
DOWNLOAD_NAME = "compile-cache-download"
UPLOAD_NAME = "compile-cache-upload"
# Never block serving on the cache: a failed or slow sync means vLLM compiles, as without a shared cache.
DOWNLOAD_SCRIPT = (
    'timeout "$SYNC_TIMEOUT_S" aws s3 sync --only-show-errors "$CACHE_URI" "$CACHE_DIR" '
    '|| echo "compile cache not synced from $CACHE_URI: vLLM compiles"'
)
# Wait until vLLM answers /health with 200 (bash's /dev/tcp: the image has no HTTP client we rely on), upload what
# it compiled (sync skips files already there, same size and time), then idle until the pod ends.
UPLOAD_SCRIPT = (
    "until (exec 3<>/dev/tcp/127.0.0.1/$VLLM_PORT && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 "
    '&& read -r -t 10 status <&3 && [[ $status == *" 200 "* ]]) 2>/dev/null; do sleep 10; done; '
    'aws s3 sync --only-show-errors "$CACHE_DIR" "$CACHE_URI" || echo "compile cache not written to $CACHE_URI"; '
    "trap 'exit 0' TERM; sleep infinity & wait"
)


def settings_hash(vllm_args: list[str]) -> str:
    """Twelve hex digits of the flags that change what vLLM compiles (all but RUNTIME_ONLY_FLAGS)."""
    kept, skip = [], False
    for arg in vllm_args:
        if skip:
            skip = False
        elif arg in RUNTIME_ONLY_FLAGS:
            skip = True
        else:
            kept.append(arg)
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:12]


def cache_key(model: str, gpu_families: list[str], tensor_parallel: int, vllm_args: list[str]) -> str:
    """Where under BUCKET_PREFIX (and under the node's cache directory) this deployment's cache lives."""
    return "/".join([
        f"vllm-{VLLM_VERSION}", model.strip("/"), "-".join(sorted(gpu_families)), f"tp{tensor_parallel}",
        settings_hash(vllm_args),
    ])


def cache_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{BUCKET_PREFIX}/{key}/"


def _sync_container(name: str, script: str, env: list[dict[str, str]], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "image": AWS_CLI_IMAGE,
        "command": ["/bin/bash", "-c", script],
        "env": env,
        "resources": SYNC_RESOURCES,
        "securityContext": SYNC_SECURITY,
        "volumeMounts": mounts,
    }


def sync_containers(
    uri: str, cache_dir: str, region: str, timeout_s: int, mounts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The pod's init containers: the download, then the upload as a native sidecar (restartPolicy Always, an init
    container that keeps running beside vLLM; Kubernetes 1.29+)."""
    env = [{"name": "AWS_REGION", "value": region}, {"name": "CACHE_URI", "value": uri},
           {"name": "CACHE_DIR", "value": f"{cache_dir}/{TORCH_COMPILE_DIR}/"},
           {"name": "HOME", "value": "/tmp"}]
    timeout = {"name": "SYNC_TIMEOUT_S", "value": str(timeout_s)}
    download = _sync_container(DOWNLOAD_NAME, DOWNLOAD_SCRIPT, [*env, timeout], mounts)
    port = {"name": "VLLM_PORT", "value": str(contracts.VLLM_PORT)}
    upload = _sync_container(UPLOAD_NAME, UPLOAD_SCRIPT, [*env, port], mounts)
    return [download, {**upload, "restartPolicy": "Always"}]


def write_statement(bucket_arn: Any) -> dict[str, Any]:
    """The serving role's only write: objects under the compile-cache prefix."""
    return {
        "Sid": "WriteCompileCache",
        "Effect": "Allow",
        "Action": ["s3:PutObject"],
        "Resource": bucket_arn.apply(lambda arn: f"{arn}/{BUCKET_PREFIX}/*"),
    }
