"""Seed 000's capacity claims, reproduced from its own inputs with the throughput model and the simulator:
Qwen2.5-7B on one L4 (g6), max-num-seqs 8, short grammar-correction requests. The seed says one pod holds 8
concurrent requests, serves about 2 requests/s, 3-6 s each; ten pods about 20 requests/s."""

from pathlib import Path

import numpy as np

from infra.cost.estimate import load_stack, sim_settings
from infra.cost.simulator import HOUR_S, simulate
from infra.cost.throughput import throughput

PROJECT_DIR = Path(__file__).resolve().parent.parent
SEED_REQUESTS_PER_POD_S = 2.0
SEED_SECONDS_PER_REQUEST = (3.0, 6.0)


def test_one_l4_pod_matches_the_seeds_per_pod_capacity() -> None:
    config = load_stack(PROJECT_DIR, "prod").config
    rates = throughput("L4", config.serving.vllm, config.simulation)
    seconds = rates.service_s(config.traffic.prompt_tokens, config.traffic.output_tokens)
    assert SEED_SECONDS_PER_REQUEST[0] <= seconds <= SEED_SECONDS_PER_REQUEST[1]
    # Eight slots busy all the time: requests/s per pod within 10 % of the seed's "about 2".
    assert abs(config.serving.vllm.max_num_seqs / seconds - SEED_REQUESTS_PER_POD_S) < 0.2


def test_a_saturated_pod_serves_what_the_seed_says() -> None:
    stack = load_stack(PROJECT_DIR, "prod", [
        "serving.vllm.maxReplicas=1", "traffic.cacheableShare=0", "simulation.spotInterruptionsPerNodeHour=0",
        "traffic.weekday=" + str(["peak"] * 24),
    ])
    result = simulate(sim_settings(stack.config), horizon_s=HOUR_S)
    served_per_s = result.served / HOUR_S
    assert abs(served_per_s - SEED_REQUESTS_PER_POD_S) < 0.2, served_per_s
    assert float(np.median(result.waits)) > 60  # 36 requests/s offered to 2/s of capacity: a long queue
