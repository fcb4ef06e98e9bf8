"""Per-GPU throughput of a dense decoder model in vLLM, from the GPU's memory bandwidth and tensor FLOPs.

Decode at small batches is memory bound: each step reads every weight once, so one sequence gets about
`bandwidth x efficiency / weight bytes` tokens/s whatever the batch (up to max-num-seqs; the KV-cache reads of a
few short sequences add ~1-2 % and are left out). Prefill is compute bound: 2 FLOPs per parameter per prompt token
at `compute efficiency` of the dense tensor peak. Both efficiencies are `simulation.*` settings, to be replaced by
measured figures (seeds 000/001 disagree on per-GPU capacity by 8x: REFERENCE.md).
"""

from dataclasses import dataclass

from components import cold_start
from components.vllm import VllmConfig
from stacks.traffic import SimulationConfig


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    bandwidth_gb_s: float
    dense_bf16_tflops: float
    source: str


# Datasheet figures (dense, i.e. half the "with sparsity" numbers NVIDIA headlines).
GPUS = {
    "L4": Gpu("L4", 24, 300, 121, "https://grokipedia.com/page/NVIDIA_L4_vs_L40S (NVIDIA L4 datasheet: 300 GB/s, "
              "242 TFLOPS FP16 tensor with sparsity)"),
    "L40S": Gpu("L40S", 48, 864, 362, "https://grokipedia.com/page/NVIDIA_L4_vs_L40S (864 GB/s); "
                "https://hmc-tech.com/gpu/nvidia-l4-vs-nvidia-l40 (362 TFLOPS BF16 tensor, dense)"),
    "A10G": Gpu("A10G", 24, 600, 125, "estimate: NVIDIA A10 datasheet figures (600 GB/s, 125 TFLOPS BF16 dense); "
                "AWS's A10G variant is not separately published"),
    "T4": Gpu("T4", 16, 320, 65, "estimate: NVIDIA T4 datasheet (320 GB/s, 65 TFLOPS FP16 mixed precision)"),
}


def model_size_b(vllm: VllmConfig, capacity: SimulationConfig) -> float:
    """Billions of parameters: `simulation.modelSizeB`, else the `7B` / `1.5b` in the model's name (or, before a
    bucket-served stack has a published version, in the name clients call it by)."""
    return cold_start.model_size_b(vllm.model or vllm.name_for_clients, capacity.model_size_b)


@dataclass(frozen=True)
class Throughput:
    gpu: str
    decode_tokens_s: float  # per sequence
    prefill_tokens_s: float  # per pod

    def service_s(self, prompt_tokens: float, output_tokens: float) -> float:
        return prompt_tokens / self.prefill_tokens_s + output_tokens / self.decode_tokens_s

    def ttft_s(self, prompt_tokens: float) -> float:
        return prompt_tokens / self.prefill_tokens_s + 1 / self.decode_tokens_s


def throughput(gpu_name: str, vllm: VllmConfig, capacity: SimulationConfig) -> Throughput:
    gpu = GPUS[gpu_name]
    params = model_size_b(vllm, capacity) * 1e9
    weight_bytes = cold_start.weights_gb(params / 1e9, vllm.quantization) * 1e9
    gpus = vllm.gpus_per_pod
    decode = gpus * gpu.bandwidth_gb_s * 1e9 * capacity.bandwidth_efficiency / weight_bytes
    prefill = gpus * gpu.dense_bf16_tflops * 1e12 * capacity.compute_efficiency / (2 * params)
    return Throughput(gpu_name, decode, prefill)
