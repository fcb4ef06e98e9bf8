"""The capacity simulator against closed-form cases: an M/M/c queue at steady load (Erlang C), a step in traffic
(scale-up delay = HPA sync + stabilisation window + cold start), a cold start longer than the gateway's hold."""

import math
from dataclasses import replace

from components.vllm import ScaleRate
from infra.cost.simulator import HOUR_S, SimSettings, simulate
from infra.cost.throughput import Throughput

COLD_START_S = 47 + 44 + 33  # node launch + image pull + model load


def settings(**overrides: object) -> SimSettings:
    base = SimSettings(
        hourly_rates=[3.0], prompt_tokens=0, output_tokens=1, cacheable_share=0.0,
        # 1 output token at 1 token/s and no prompt: exponential service times with mean 1 s.
        throughput=Throughput("L4", decode_tokens_s=1.0, prefill_tokens_s=1e9),
        slots_per_pod=4, min_replicas=1, max_replicas=1, max_nodes=16, target_per_pod=6, waiting_weight=10,
        gateway_activation=True, polling_s=15, cooldown_s=300, hpa_sync_s=15,
        scale_up=ScaleRate(stabilization_window_s=30, pods=2, period_s=60),
        scale_down=ScaleRate(stabilization_window_s=300, pods=1, period_s=120),
        node_launch_s=47, image_pull_s=44, model_load_s=33, consolidate_after_s=900,
        hold_timeout_s=300, read_timeout_s=3600, spot=False, interruptions_per_node_hour=0.0,
        cache_hit_latency_s=0.002, seed=7,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def erlang_c_wait(arrival_rate: float, service_rate: float, servers: int) -> tuple[float, float]:
    """Probability of waiting and mean wait in an M/M/c queue (textbook Erlang C)."""
    load = arrival_rate / service_rate
    top = load**servers / math.factorial(servers) * servers / (servers - load)
    waiting = top / (sum(load**k / math.factorial(k) for k in range(servers)) + top)
    return waiting, waiting / (servers * service_rate - arrival_rate)


def test_steady_load_matches_erlang_c() -> None:
    # One pod of 4 slots, 3 requests/s, 1 s per request: utilisation 0.75, about 43,000 requests in 4 hours.
    result = simulate(settings(), horizon_s=4 * HOUR_S)
    p_wait, mean_wait = erlang_c_wait(3.0, 1.0, 4)
    assert result.served > 40_000
    assert abs(float((result.waits > 0).mean()) - p_wait) < 0.03, ((result.waits > 0).mean(), p_wait)
    # Waits are autocorrelated, so the tolerance is wider than 1/sqrt(n): 10 %.
    assert abs(float(result.waits.mean()) - mean_wait) / mean_wait < 0.10, (result.waits.mean(), mean_wait)


def test_a_traffic_step_scales_up_after_sync_window_and_cold_start() -> None:
    # Hour 0: 0.2 request/s, one warm pod (8 slots of ~4 s) never queues; hour 1: 10 requests/s needs five pods.
    step = settings(hourly_rates=[0.2, 10.0], output_tokens=4, slots_per_pod=8, max_replicas=8)
    result = simulate(step, horizon_s=2 * HOUR_S)
    assert [t for t in result.pod_ready_times if t <= HOUR_S] == []  # so every new pod needs a new node
    first_new_pod = min(t for t in result.pod_ready_times if t > HOUR_S)
    earliest = HOUR_S + 30 + COLD_START_S
    assert earliest <= first_new_pod <= earliest + 2 * 15, first_new_pod - HOUR_S
    assert len([t for t in result.pod_ready_times if t > HOUR_S]) >= 4  # +2 pods a minute until it keeps up
    assert result.timed_out == result.refused == 0


def test_from_zero_the_first_request_waits_for_activation_and_a_cold_node() -> None:
    cold = settings(hourly_rates=[0.05], min_replicas=0, max_replicas=1)
    result = simulate(cold, horizon_s=HOUR_S)
    first_wait = float(result.waits[0])
    assert COLD_START_S <= first_wait <= COLD_START_S + 15, first_wait


def test_a_hold_shorter_than_the_cold_start_refuses_the_first_requests() -> None:
    short = settings(hourly_rates=[0.5], min_replicas=0, max_replicas=1, hold_timeout_s=60)
    result = simulate(short, horizon_s=HOUR_S)
    assert result.refused > 0
    assert result.served > 0


def test_the_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    first = simulate(settings(), horizon_s=HOUR_S).summary()
    assert simulate(settings(), horizon_s=HOUR_S).summary() == first
    assert simulate(settings(seed=8), horizon_s=HOUR_S).summary() != first


def test_spot_interruptions_replace_the_pod_on_a_new_node() -> None:
    flaky = settings(spot=True, interruptions_per_node_hour=2.0, hourly_rates=[1.0])
    result = simulate(flaky, horizon_s=2 * HOUR_S)
    assert result.spot_interruptions > 0
    assert result.node_launches >= 1 + result.spot_interruptions - 1
    assert len(result.pod_ready_times) >= result.spot_interruptions - 1
