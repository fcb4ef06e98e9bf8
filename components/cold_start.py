"""The cold-start budget: how long a vLLM pod takes from scale-up (pod created) to serving, stage by stage, computed
from what the stack configures. It is the one source of every wait that must outlast a cold start: vLLM's startup
probe window, Pulumi's rollout wait, the gateway's hold timeout, the ALB idle timeout and the capacity simulator's
start-up delays. Change a stage and they all move.

Each stage names its source. The measured figures are seed 004's, on g5.2xlarge Spot with a 7B AWQ model
(3.9 GiB of weights, an 8 GB vLLM image): they are what an upstream stack measured, to be replaced by this
stack's own measurement (docs/cold-start.md says how).
"""

import math
import re
from dataclasses import dataclass

from pydantic import Field

from components.config_base import StrictModel
from components.node_pools import MAX_VOLUME_INITIALIZATION_MIBPS

GIB = 2**30
MIB = 2**20
# bytes per parameter by `--quantization` (4-bit methods pack two weights per byte); unquantized: bf16.
BYTES_PER_PARAM = {"awq": 0.5, "awq_marlin": 0.5, "gptq": 0.5, "gptq_marlin": 0.5, "bitsandbytes": 0.5, "fp8": 1.0}
BF16_BYTES = 2.0
# The budget's model size when neither the model's name nor simulation.modelSizeB gives one: seed 000's 7B.
ASSUMED_SIZE_B = 7.0
# The ALB's largest idle timeout (Elastic Load Balancing API, idle_timeout.timeout_seconds: 1-4000).
ALB_MAX_IDLE_TIMEOUT_S = 4000
# The startup probe's period: a ready server is seen at most this late.
STARTUP_PROBE_PERIOD_S = 5

SEED_004 = "seed 004 (g5.2xlarge Spot, measured)"
# Measured stage figures, each with its source.
NODE_READY_S = 47.0  # Karpenter launch to node Ready
SOCI_PULL_S_PER_GB = 44.0 / 8  # 8 GB image in 44 s with SOCI parallel pull
PLAIN_PULL_S_PER_GB = 240.0 / 8  # "3-4 minutes" without it: the upper end
S3_STREAM_GIB_S = 1.5  # 3.9 GiB in 2.4 s (1.6 GiB/s); 1.5+ GiB/s through an S3 gateway endpoint
MODEL_LOAD_S = 22.8
COMPILE_CACHED_S = 7.8
COMPILE_COLD_S = 60.0
# The compile cache's sync image (components/versions.py AWS_CLI_IMAGE), pulled before the vLLM image (kubelet pulls
# an init container's image when it starts it): an estimate, Amazon Linux 2023 plus the AWS CLI, compressed.
AWS_CLI_IMAGE_GB = 0.15
# What vLLM 0.33.0 may read of its image before it serves: every file a start opens (Python, torch, triton, the
# CUDA libraries) plus every CUDA wheel file and compiled vLLM/FlashInfer extension, loaded or not: 6.22 GiB by
# `scripts/measure-image-reads.py` (docs/cold-start.md), rounded up. An upper bound: libraries are mapped, and only
# the pages used are read.
IMAGE_START_READ_GIB = 6.3
IMAGE_START_READ_SOURCE = "upper bound measured with scripts/measure-image-reads.py"
# The sync may take this long at least before the pod gives up on it (CLI start, listing), whatever the budget.
SYNC_MIN_TIMEOUT_S = 60


class ModelSizeUnknown(ValueError):
    pass


def model_size_b(model_name: str, override: float | None) -> float:
    """Billions of parameters: `override` (simulation.modelSizeB), else the `7B` / `1.5b` in the model's name."""
    if override:
        return override
    match = re.search(r"(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", model_name)
    if not match:
        raise ModelSizeUnknown(
            f"llm-platform:simulation.modelSizeB: unset, and serving.vllm.model {model_name!r} names no parameter "
            "count like 7B; set it"
        )
    return float(match.group(1))


def weights_gb(size_b: float, quantization: str | None) -> float:
    """Decimal GB of weights a model of `size_b` billion parameters has at `quantization`."""
    return size_b * BYTES_PER_PARAM.get(quantization or "", BF16_BYTES)


class ColdStartConfig(StrictModel):
    """`serving.coldStart`: what the budget cannot read from the rest of the stack."""

    image_gb: float = Field(default=8, gt=0, le=100, description="Size of the vLLM image (seed 004: 8-10 GB).")
    hub_throughput_gib_s: float = Field(
        default=0.1, gt=0, le=10, description="Hugging Face download rate through NAT (an assumption: measure it)."
    )
    hold_tolerance: float = Field(
        default=1.5, ge=1, le=5, description="The gateway holds a request this many cold-start budgets."
    )
    probe_tolerance: float = Field(
        default=3, ge=1, le=10, description="A start this many budgets late is failed (startup probe, rollout)."
    )
    image_start_read_gib: float = Field(
        default=IMAGE_START_READ_GIB, gt=0, le=100,
        description="What vLLM reads of its image before it serves: with a prefetched image (a data-volume "
        "snapshot) these blocks come from S3 at the volume's initialization rate.",
    )
    compile_cache_gib: float = Field(
        default=0.5, gt=0, le=50,
        description="Size of one deployment's torch.compile cache, synced from the model bucket before vLLM starts "
        "with serving.vllm.sharedCompileCache (an estimate for a 7B model: measure with du -sh on a node).",
    )


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    source: str


@dataclass(frozen=True)
class ColdStartInputs:
    """What the rest of the stack configures that a cold start depends on."""

    fast_image_pull: bool  # the GPU node class turns on SOCI parallel pull (nodeadm FastImagePull)
    weights_from_s3: bool  # modelSource s3, runai streamer
    weights_gb: float
    # a torch.compile cache a pod on a new node finds filled (a shared store); a node-local cache only helps
    # repeat starts on the same node, which neither a scale-up from nothing nor a fresh warm node is
    shared_compile_cache: bool
    # The model's size was not known (no `7B` in its name, no simulation.modelSizeB): weights_gb is assumed.
    weights_assumed: bool = False
    # The GPU node's data volume comes from a snapshot with the pods' images on it (gpuPool.imageSnapshotId),
    # initialized from S3 at this many MiB/s.
    prefetched_image: bool = False
    volume_initialization_mibps: int = MAX_VOLUME_INITIALIZATION_MIBPS


@dataclass(frozen=True)
class ColdStartBudget:
    config: ColdStartConfig
    node: Stage
    image: Stage
    in_container: tuple[Stage, ...]  # weights, load, compile, probe: what the startup probe must wait for
    init: tuple[Stage, ...] = ()  # init containers, before vLLM starts: the compile cache's sync
    # What a miss of the shared compile cache adds (a new model, settings or GPU type compiles once): the budget
    # counts the hit, the waits that fail a start (startup probe, rollout) also allow the miss.
    miss_s: float = 0.0
    # A prefetched image is read while the container runs (blocks come off the snapshot as vLLM first reads
    # them): on a new node the startup probe must wait for that too.
    image_read_in_container: bool = False

    @property
    def container_s(self) -> float:
        return sum(stage.seconds for stage in self.in_container)

    @property
    def warm_s(self) -> float:
        """From scale-up to serving on a GPU node that is up with the image on it (warm capacity: the placeholder
        pulled the image, components/warm_capacity.py)."""
        return sum(stage.seconds for stage in self.init) + self.container_s

    @property
    def cold_s(self) -> float:
        """From scale-up to serving with no GPU node."""
        return self.node.seconds + self.image.seconds + self.warm_s

    def stages(self) -> list[Stage]:
        return [self.node, self.image, *self.init, *self.in_container]

    @property
    def init_timeout_s(self) -> int:
        """How long an init container may sync before the pod goes on without it: `probeTolerance` times its stage."""
        return max(SYNC_MIN_TIMEOUT_S, math.ceil(self.config.probe_tolerance * sum(s.seconds for s in self.init)))

    @property
    def startup_failure_threshold(self) -> int:
        """Startup probe failures allowed: the in-container stages with a compile cache miss (and a prefetched
        image's first reads), `probeTolerance` times over."""
        reads_s = self.image.seconds if self.image_read_in_container else 0.0
        return math.ceil(
            self.config.probe_tolerance * (reads_s + self.container_s + self.miss_s) / STARTUP_PROBE_PERIOD_S
        )

    @property
    def rollout_timeout_s(self) -> int:
        """How long `pulumi up` waits for a new vLLM pod: a whole cold start with a compile cache miss (a new model
        version misses), `probeTolerance` times over."""
        return math.ceil(self.config.probe_tolerance * (self.cold_s + self.miss_s))

    @property
    def hold_timeout_s(self) -> int:
        """How long the gateway holds a request while no vLLM pod is ready: a cold start, `holdTolerance` over."""
        return math.ceil(self.config.hold_tolerance * self.cold_s)

    def idle_timeout_s(self, hold_timeout_s: int, upstream_read_timeout_s: int) -> int:
        """The ALB idle timeout: a held request sends nothing until the hold ends and vLLM answers (a non-streamed
        answer comes whole, within the upstream read timeout); the ALB must not cut it first."""
        return hold_timeout_s + upstream_read_timeout_s


def image_stage(inputs: ColdStartInputs, config: ColdStartConfig) -> Stage:
    if inputs.prefetched_image:
        return prefetched_image_stage(inputs.volume_initialization_mibps, config.image_start_read_gib)
    image_gb = config.image_gb + (AWS_CLI_IMAGE_GB if inputs.shared_compile_cache else 0)
    stage = pulled_image_stage(inputs.fast_image_pull, image_gb)
    if inputs.shared_compile_cache:
        return Stage("image", stage.seconds, f"{stage.source}; plus the {AWS_CLI_IMAGE_GB} GB sync image (estimate)")
    return stage


def prefetched_image_stage(rate_mibps: int, read_gib: float) -> Stage:
    """Images already on the data volume: nothing is pulled, but the volume's blocks come from S3 as they are
    first read (EBS volume initialization), so what vLLM reads before serving arrives at most at `rate_mibps`."""
    return Stage(
        "image", read_gib * GIB / MIB / rate_mibps,
        f"prefetched on the data-volume snapshot, no pull: the {read_gib} GiB vLLM may read before serving "
        f"({IMAGE_START_READ_SOURCE}) at the volume's {rate_mibps} MiB/s initialization rate (EBS Provisioned Rate "
        "for Volume Initialization)",
    )


def pulled_image_stage(fast_image_pull: bool, image_gb: float) -> Stage:
    if fast_image_pull:
        return Stage("image", image_gb * SOCI_PULL_S_PER_GB, f"{SEED_004}: 8 GB in 44 s with SOCI parallel pull")
    return Stage("image", image_gb * PLAIN_PULL_S_PER_GB, f"{SEED_004}: 3-4 min for 8 GB without SOCI (4 min)")


def weights_stage(inputs: ColdStartInputs, config: ColdStartConfig) -> Stage:
    gib = inputs.weights_gb * 1e9 / GIB
    assumed = "size assumed (a 7B model in bf16; set simulation.modelSizeB): " if inputs.weights_assumed else ""
    if inputs.weights_from_s3:
        return Stage("weights", gib / S3_STREAM_GIB_S,
                     f"{assumed}{gib:.1f} GiB at {S3_STREAM_GIB_S} GiB/s: {SEED_004}, 3.9 GiB from S3 in 2.4 s (runai "
                     "streamer, S3 gateway endpoint)")
    return Stage("weights", gib / config.hub_throughput_gib_s,
                 f"{assumed}{gib:.1f} GiB at coldStart.hubThroughputGibS {config.hub_throughput_gib_s} GiB/s (assumed)")


def cache_sync_stage(config: ColdStartConfig) -> Stage:
    return Stage("cache", config.compile_cache_gib / S3_STREAM_GIB_S,
                 f"compile cache {config.compile_cache_gib} GiB (coldStart.compileCacheGib, an estimate) at "
                 f"{S3_STREAM_GIB_S} GiB/s from the model bucket")


def cold_start_budget(inputs: ColdStartInputs, config: ColdStartConfig) -> ColdStartBudget:
    compile_stage = (
        Stage("compile", COMPILE_CACHED_S, f"{SEED_004}: torch.compile with a shared cache")
        if inputs.shared_compile_cache
        else Stage("compile", COMPILE_COLD_S, f"{SEED_004}: torch.compile without a cache (about 60 s)")
    )
    init = (cache_sync_stage(config),) if inputs.shared_compile_cache else ()
    in_container = (
        weights_stage(inputs, config),
        Stage("load", MODEL_LOAD_S, f"{SEED_004}: model load"),
        compile_stage,
        Stage("probe", STARTUP_PROBE_PERIOD_S, "startup probe period: a ready server is seen this late at most"),
    )
    node = Stage("node", NODE_READY_S, f"{SEED_004}: Karpenter launch to node Ready")
    image = image_stage(inputs, config)
    miss_s = COMPILE_COLD_S - COMPILE_CACHED_S if inputs.shared_compile_cache else 0.0
    return ColdStartBudget(config, node, image, in_container, init, miss_s, inputs.prefetched_image)


def describe(budget: ColdStartBudget, hold_timeout_s: int, idle_timeout_s: int) -> list[str]:
    """What `preview` prints: each stage with its source, the two totals, and the waits derived from them."""
    lines = ["cold-start budget (scale-up to serving):"]
    lines += [f"  {stage.name:<8} {stage.seconds:6.1f} s  {stage.source}" for stage in budget.stages()]
    lines.append(f"  warm GPU node (image on it): {budget.warm_s:.0f} s; no GPU node: {budget.cold_s:.0f} s")
    lines.append(
        f"  derived: startup probe {STARTUP_PROBE_PERIOD_S * budget.startup_failure_threshold} s, rollout wait "
        f"{budget.rollout_timeout_s} s, gateway hold {hold_timeout_s} s, ALB idle {idle_timeout_s} s"
    )
    return lines
