"""A discrete-event simulation of the autoscaled GPU tier under a traffic profile, deterministic for a seed.

Requests arrive as a Poisson process whose rate changes by the hour (the stack's `traffic` profile). The gateway
answers the cacheable share from its cache; the rest go to vLLM pods, each running up to `max-num-seqs` sequences
at once (service time: infra/cost/throughput.py), in one FIFO queue. With no pod ready the gateway holds requests
for `holdTimeoutS` (then 503: refused); a queued request the upstream read timeout passes is timed out.

Scaling follows the platform as configured (components/vllm.py): KEDA's formula `running + waiting x w
(+ pending x w)` over `targetPerPod`, its activation and `cooldownPeriodS` to and from zero every
`pollingIntervalS`; the HPA every `simulation.hpaSyncS` with its 10 % tolerance, stabilisation windows and Pods
policies (kubernetes pkg/controller/podautoscaler semantics). A pod needs a GPU node: an empty one (model load
only) or a new one from Karpenter (node launch + image pull + model load), up to the pool's GPU limit; an empty
node goes after the pool's `consolidateAfter`. Spot nodes are interrupted at a configured rate with AWS's
two-minute notice; the pod's replacement starts at once on a new node.
"""

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from components.node_pools import duration_seconds
from components.vllm import ScaleRate
from infra.cost.throughput import Throughput
from stacks.config import PlatformConfig

HOUR_S = 3600
WEEK_S = 7 * 24 * HOUR_S
SAMPLE_S = 60
HPA_TOLERANCE = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance default
SPOT_NOTICE_S = 120
SAMPLED = ("t", "arrivals", "replicas", "ready", "nodes", "queued")

# Event kinds, in the order they run when simultaneous.
FINISH, POD_READY, NODE_EXPIRE, SPOT_NOTICE, SPOT_KILL, KEDA_POLL, HPA_SYNC, SAMPLE = range(8)


@dataclass(frozen=True)
class SimSettings:
    """Everything the simulation reads, taken from a validated stack config (`settings_from_config`)."""

    hourly_rates: list[float]
    prompt_tokens: float
    output_tokens: float
    cacheable_share: float
    throughput: Throughput
    slots_per_pod: int
    min_replicas: int
    max_replicas: int
    max_nodes: int
    target_per_pod: float
    waiting_weight: float
    gateway_activation: bool
    polling_s: float
    cooldown_s: float
    hpa_sync_s: float
    scale_up: ScaleRate
    scale_down: ScaleRate
    node_launch_s: float
    image_pull_s: float
    model_load_s: float
    consolidate_after_s: float
    hold_timeout_s: float
    read_timeout_s: float
    spot: bool
    interruptions_per_node_hour: float
    cache_hit_latency_s: float
    seed: int


def settings_from_config(config: PlatformConfig, throughput: Throughput, spot: bool) -> SimSettings:
    vllm, scaling, gateway = config.serving.vllm, config.serving.scaling, config.serving.gateway
    pool, traffic, capacity = config.addons.karpenter.gpu_pool, config.traffic, config.simulation
    budget = config.cold_start_budget()
    return SimSettings(
        hourly_rates=traffic.hourly_rates(),
        prompt_tokens=traffic.prompt_tokens,
        output_tokens=traffic.output_tokens,
        cacheable_share=traffic.cacheable_share,
        throughput=throughput,
        slots_per_pod=vllm.max_num_seqs,
        min_replicas=vllm.min_replicas,
        max_replicas=vllm.max_replicas,
        max_nodes=pool.gpu_limit // vllm.gpus_per_pod,
        target_per_pod=scaling.target_per_pod,
        waiting_weight=scaling.waiting_weight,
        gateway_activation=scaling.activation == "gateway",
        polling_s=scaling.polling_interval_s,
        cooldown_s=scaling.cooldown_period_s,
        hpa_sync_s=capacity.hpa_sync_s,
        scale_up=scaling.scale_up,
        scale_down=scaling.scale_down,
        node_launch_s=budget.node.seconds,
        image_pull_s=budget.image.seconds,
        model_load_s=budget.warm_s,
        consolidate_after_s=duration_seconds(pool.consolidate_after),
        hold_timeout_s=config.gateway_timeouts()[0],
        read_timeout_s=gateway.upstream_read_timeout_s,
        spot=spot,
        interruptions_per_node_hour=capacity.spot_interruptions_per_node_hour if spot else 0.0,
        cache_hit_latency_s=capacity.cache_hit_latency_s,
        seed=capacity.seed,
    )


@dataclass(eq=False)
class Node:
    launched: float
    ready_at: float
    pod: "Pod | None" = None
    empty_since: float | None = None
    gone: bool = False  # terminated, or under a Spot interruption notice


@dataclass(eq=False)
class Pod:
    node: Node
    ready: bool = False
    draining: bool = False
    dead: bool = False
    running: int = 0


@dataclass
class SimResult:
    horizon_s: float
    requests: int
    cache_hits: int
    served: int
    refused: int
    timed_out: int
    interrupted: int
    node_seconds: float
    node_launches: int
    spot_interruptions: int
    waits: np.ndarray  # queue wait of every request a vLLM pod served
    ttfts: np.ndarray  # time to first token of every answered request (cache hits included)
    starts: np.ndarray  # when each of `waits` started, for hourly percentiles
    prompt_tokens: float
    output_tokens: float
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    ttft_gpu_offset_s: float = 0.0  # prefill + first token, added to a vLLM request's queue wait
    pod_ready_times: list[float] = field(default_factory=list)  # when each started pod became ready

    @property
    def gpu_node_hours(self) -> float:
        return self.node_seconds / HOUR_S

    def percentile(self, values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if len(values) else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "simulatedHours": self.horizon_s / HOUR_S,
            "requests": self.requests,
            "cacheHits": self.cache_hits,
            "served": self.served,
            "refused": self.refused,
            "timedOut": self.timed_out,
            "interrupted": self.interrupted,
            "gpuNodeHours": round(self.gpu_node_hours, 2),
            "gpuNodeLaunches": self.node_launches,
            "spotInterruptions": self.spot_interruptions,
            "queueWaitP50S": round(self.percentile(self.waits, 50), 3),
            "queueWaitP95S": round(self.percentile(self.waits, 95), 3),
            "ttftP50S": round(self.percentile(self.ttfts, 50), 3),
            "ttftP95S": round(self.percentile(self.ttfts, 95), 3),
            "ttftP99S": round(self.percentile(self.ttfts, 99), 3),
            "maxReplicas": int(self.samples["replicas"].max()) if len(self.samples.get("replicas", [])) else 0,
        }


def per_level(result: SimResult, hour_levels: list[str]) -> dict[str, dict[str, float]]:
    """Seed 000's scenarios, measured: for each traffic level, its hours in the run, the mean and largest replica
    count, GPU node-hours, and the p95 queue wait and TTFT of the requests vLLM started in its hours."""
    samples = result.samples
    sample_level = [hour_levels[int((t - SAMPLE_S) // HOUR_S) % len(hour_levels)] for t in samples["t"]]
    start_hours = (result.starts // HOUR_S).astype(int) % len(hour_levels)
    start_level = np.asarray(hour_levels)[start_hours] if len(start_hours) else np.empty(0, dtype=str)
    ttft_offset = result.ttft_gpu_offset_s
    table: dict[str, dict[str, float]] = {}
    for level in dict.fromkeys(hour_levels):
        mask = np.asarray([name == level for name in sample_level], dtype=bool)
        waits = result.waits[start_level == level] if len(start_level) else np.empty(0)
        table[level] = {
            "hours": float(mask.sum() * SAMPLE_S / HOUR_S),
            "meanReplicas": round(float(samples["replicas"][mask].mean()), 2) if mask.any() else 0.0,
            "maxReplicas": int(samples["replicas"][mask].max()) if mask.any() else 0,
            "gpuNodeHours": round(float(samples["nodes"][mask].sum() * SAMPLE_S / HOUR_S), 1),
            "queueWaitP95S": round(float(np.percentile(waits, 95)), 3) if len(waits) else 0.0,
            "ttftP95S": round(float(np.percentile(waits, 95)) + ttft_offset, 3) if len(waits) else 0.0,
        }
    return table


def arrivals(settings: SimSettings, horizon_s: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson arrival times: within each hour, a Poisson count placed uniformly (the same process)."""
    chunks = []
    hours = math.ceil(horizon_s / HOUR_S)
    for hour in range(hours):
        rate = settings.hourly_rates[hour % len(settings.hourly_rates)]
        length = min(HOUR_S, horizon_s - hour * HOUR_S)
        count = rng.poisson(rate * length)
        chunks.append(np.sort(rng.uniform(hour * HOUR_S, hour * HOUR_S + length, count)))
    return np.concatenate(chunks) if chunks else np.empty(0)


class Simulation:
    def __init__(self, settings: SimSettings, horizon_s: float) -> None:
        self.s = settings
        self.horizon = horizon_s
        self.rng = np.random.default_rng(settings.seed)
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = itertools.count()
        self.nodes: list[Node] = []
        self.pods: list[Pod] = []  # not draining: what the Deployment counts
        self.ready: list[Pod] = []
        self.free: list[Pod] = []
        self.ready_times: list[float] = []
        self.unscheduled = 0  # pods waiting for a node (pool limit reached)
        self.queue: deque[tuple[int, float]] = deque()  # (request, deadline) forwarded to vLLM
        self.held: deque[tuple[int, float]] = deque()  # held by the gateway while no pod is ready
        self.replicas = 0
        self.last_active = 0.0
        self.recommendations: deque[tuple[float, int]] = deque()
        self.changes: deque[tuple[float, int]] = deque()
        self.counts = {"refused": 0, "timed_out": 0, "interrupted": 0, "launches": 0, "spot": 0}
        self.node_seconds = 0.0
        self.samples: dict[str, list[float]] = {key: [] for key in SAMPLED}

    def push(self, time: float, kind: int, payload: Any = None) -> None:
        heapq.heappush(self.heap, (time, kind, next(self.seq), payload))

    # --- requests -------------------------------------------------------------------------------------------
    def arrive(self, now: float, request: int) -> None:
        pod = self.free_pod()
        if pod:
            self.start(now, request, pod)
        elif self.ready:
            self.queue.append((request, now + self.s.read_timeout_s))
        elif self.s.hold_timeout_s > 0:
            self.held.append((request, now + self.s.hold_timeout_s))
        else:
            self.counts["refused"] += 1

    def free_pod(self) -> Pod | None:
        """A ready pod with a free sequence slot; `free` holds one entry per free slot, stale ones skipped."""
        free = self.free
        while free:
            pod = free.pop()
            if not (pod.draining or pod.dead):
                return pod
        return None

    def start(self, now: float, request: int, pod: Pod) -> None:
        pod.running += 1
        self.wait[request] = now - self.arrival_list[request]
        self.started[request] = now
        heapq.heappush(self.heap, (now + self.service[request], FINISH, next(self.seq), (pod, request)))

    def drain_queue(self, now: float) -> None:
        while self.queue:
            request, deadline = self.queue[0]
            if deadline < now:
                self.queue.popleft()
                self.counts["timed_out"] += 1
                continue
            pod = self.free_pod()
            if pod is None:
                return
            self.queue.popleft()
            self.start(now, request, pod)

    def expire(self, now: float) -> None:
        while self.held and self.held[0][1] < now:
            self.held.popleft()
            self.counts["refused"] += 1
        while self.queue and self.queue[0][1] < now:
            self.queue.popleft()
            self.counts["timed_out"] += 1

    # --- pods and nodes -------------------------------------------------------------------------------------
    def pod_ready(self, now: float, pod: Pod) -> None:
        if pod.dead or pod.draining:
            return
        pod.ready = True
        self.ready_times.append(now)
        self.ready.append(pod)
        self.free.extend([pod] * self.s.slots_per_pod)
        while self.held:
            request, deadline = self.held.popleft()
            if deadline < now:
                self.counts["refused"] += 1
            else:
                self.queue.append((request, now + self.s.read_timeout_s))
        self.drain_queue(now)

    def place(self, now: float) -> None:
        """Put unscheduled pods on empty nodes, else on new nodes while the pool's GPU limit allows."""
        while self.unscheduled:
            node = next((n for n in self.nodes if n.pod is None and not n.gone), None)
            if node is None and len(self.nodes) >= self.s.max_nodes:
                return
            if node is None:
                node = self.launch(now)
                ready_at = now + self.s.node_launch_s + self.s.image_pull_s + self.s.model_load_s
            else:
                # The image is on the node already unless it is still starting.
                ready_at = max(now, node.ready_at + self.s.image_pull_s) + self.s.model_load_s
            pod = Pod(node)
            node.pod, node.empty_since = pod, None
            self.pods.append(pod)
            self.unscheduled -= 1
            self.push(ready_at, POD_READY, pod)

    def launch(self, now: float) -> Node:
        node = Node(launched=now, ready_at=now + self.s.node_launch_s)
        self.nodes.append(node)
        self.counts["launches"] += 1
        if self.s.interruptions_per_node_hour > 0:
            notice = now + self.rng.exponential(HOUR_S / self.s.interruptions_per_node_hour)
            self.push(notice, SPOT_NOTICE, node)
        return node

    def remove(self, now: float, pod: Pod) -> None:
        """A pod is gone: its node is empty and Karpenter removes it after consolidateAfter."""
        pod.dead = True
        if pod in self.ready:
            self.ready.remove(pod)
        node = pod.node
        if node.pod is pod:
            node.pod, node.empty_since = None, now
            if not node.gone:
                self.push(now + self.s.consolidate_after_s, NODE_EXPIRE, (node, now))
        self.place(now)

    def terminate(self, now: float, node: Node) -> None:
        if node in self.nodes:
            self.nodes.remove(node)
            self.node_seconds += now - node.launched
        node.gone = True

    def node_expire(self, now: float, node: Node, since: float) -> None:
        if node.pod is None and node.empty_since == since and not node.gone:
            self.terminate(now, node)

    def spot_notice(self, now: float, node: Node) -> None:
        if node.gone or node not in self.nodes:
            return
        self.counts["spot"] += 1
        node.gone = True
        pod = node.pod
        if pod is not None and not pod.draining:
            self.stop_taking(pod)
            self.unscheduled += 1  # the ReplicaSet replaces it at once
            self.place(now)
        self.push(now + SPOT_NOTICE_S, SPOT_KILL, node)

    def spot_kill(self, now: float, node: Node) -> None:
        pod = node.pod
        if pod is not None and not pod.dead:
            self.counts["interrupted"] += pod.running
            self.remove(now, pod)
        node.pod = None
        self.terminate(now, node)
        self.place(now)

    def stop_taking(self, pod: Pod) -> None:
        pod.draining = True
        if pod in self.pods:
            self.pods.remove(pod)
        if pod in self.ready:
            self.ready.remove(pod)

    # --- scaling --------------------------------------------------------------------------------------------
    def metric(self) -> float:
        running = sum(pod.running for pod in self.ready)
        value = running + self.s.waiting_weight * len(self.queue)
        if self.s.gateway_activation:
            value += self.s.waiting_weight * len(self.held)
        return value

    def set_replicas(self, now: float, replicas: int) -> None:
        current = len(self.pods) + self.unscheduled
        self.changes.append((now, replicas - current))
        self.replicas = replicas
        if replicas > current:
            self.unscheduled += replicas - current
            self.place(now)
            return
        surplus = current - replicas
        cut = min(surplus, self.unscheduled)
        self.unscheduled -= cut
        surplus -= cut
        # Not-ready pods go first, then the least busy (the ReplicaSet's deletion order, roughly).
        victims = sorted(self.pods, key=lambda pod: (pod.ready, pod.running))[:surplus]
        for pod in victims:
            self.stop_taking(pod)
            if pod.running == 0:
                self.remove(now, pod)

    def keda_poll(self, now: float) -> None:
        self.expire(now)
        value = self.metric()
        if value > 0:
            self.last_active = now
        if self.replicas == 0 and value > 0:
            self.set_replicas(now, 1)
        elif self.replicas > 0 and self.s.min_replicas == 0 and now - self.last_active >= self.s.cooldown_s:
            self.set_replicas(now, 0)  # idle (value 0) since last_active for the whole cooldown

    def hpa_sync(self, now: float) -> None:
        if self.replicas == 0:
            return
        self.expire(now)
        desired = self.hpa_desired(now, self.replicas, self.metric())
        if desired != self.replicas:
            self.set_replicas(now, desired)

    def hpa_desired(self, now: float, current: int, value: float) -> int:
        target = self.s.target_per_pod
        ratio = value / (target * current)
        recommendation = current if abs(ratio - 1) <= HPA_TOLERANCE else math.ceil(value / target)
        recommendation = min(max(recommendation, max(self.s.min_replicas, 1)), self.s.max_replicas)
        self.recommendations.append((now, recommendation))
        longest = max(self.s.scale_up.stabilization_window_s, self.s.scale_down.stabilization_window_s)
        while self.recommendations and self.recommendations[0][0] <= now - longest:
            self.recommendations.popleft()
        up = min(r for t, r in self.recommendations if t > now - self.s.scale_up.stabilization_window_s or t == now)
        down = max(r for t, r in self.recommendations if t > now - self.s.scale_down.stabilization_window_s or t == now)
        desired = min(max(current, up), down)
        if desired > current:
            added = sum(d for t, d in self.changes if t > now - self.s.scale_up.period_s and d > 0)
            desired = min(desired, current - added + self.s.scale_up.pods)
        elif desired < current:
            removed = sum(-d for t, d in self.changes if t > now - self.s.scale_down.period_s and d < 0)
            desired = max(desired, current + removed - self.s.scale_down.pods)
        longest_period = max(self.s.scale_up.period_s, self.s.scale_down.period_s)
        while self.changes and self.changes[0][0] <= now - longest_period:
            self.changes.popleft()
        return desired

    # --- the run --------------------------------------------------------------------------------------------
    def sample(self, now: float, arrived: int) -> None:
        samples = self.samples
        samples["t"].append(now)
        samples["arrivals"].append(arrived / SAMPLE_S)
        samples["replicas"].append(self.replicas)
        samples["ready"].append(len(self.ready))
        samples["nodes"].append(len(self.nodes))
        samples["queued"].append(len(self.queue) + len(self.held))

    def warm_start(self) -> None:
        """The stack's minimum replicas are up and ready when the run starts."""
        for _ in range(self.s.min_replicas):
            node = self.launch(0.0)
            pod = Pod(node, ready=True)
            node.pod = pod
            self.pods.append(pod)
            self.ready.append(pod)
            self.free.extend([pod] * self.s.slots_per_pod)
        self.replicas = self.s.min_replicas

    def run(self, progress: Callable[[float], None] | None = None) -> SimResult:
        everything = arrivals(self.s, self.horizon, self.rng)
        self.all_arrivals = everything
        cached = self.rng.random(len(everything)) < self.s.cacheable_share
        self.arrival = everything[~cached]
        count = len(self.arrival)
        self.arrival_list = self.arrival.tolist()
        outputs = self.rng.exponential(self.s.output_tokens, count)
        prefill = self.s.prompt_tokens / self.s.throughput.prefill_tokens_s
        self.service = (prefill + outputs / self.s.throughput.decode_tokens_s).tolist()
        self.wait = [math.nan] * count
        self.started = [math.nan] * count
        self.done = [False] * count
        self.warm_start()
        self.push(0.0, KEDA_POLL)
        self.push(0.0, HPA_SYNC)
        self.push(SAMPLE_S, SAMPLE, 0)
        self.loop(progress)
        for node in list(self.nodes):
            self.terminate(self.horizon, node)
        return self.result(everything, cached, outputs)

    def loop(self, progress: Callable[[float], None] | None) -> None:
        """The event loop. The two events almost every request makes (its arrival at a free slot, and its end on
        a pod that keeps serving) are handled inline: a simulated week of prod is millions of them."""
        arrival, heap, horizon, free, service = self.arrival_list, self.heap, self.horizon, self.free, self.service
        wait, started, done, seq = self.wait, self.started, self.done, self.seq
        heappush, heappop = heapq.heappush, heapq.heappop
        index, count, arrived_in_sample = 0, len(arrival), 0
        next_report = HOUR_S
        while True:
            next_arrival = arrival[index] if index < count else math.inf
            next_event = heap[0][0] if heap else math.inf
            now = next_arrival if next_arrival <= next_event else next_event
            if now > horizon:
                return
            if progress and now >= next_report:
                progress(now / horizon)
                next_report += HOUR_S
            if next_arrival <= next_event:
                pod = free.pop() if free else None
                if pod is not None and not (pod.draining or pod.dead):
                    pod.running += 1
                    wait[index] = 0.0
                    started[index] = now
                    heappush(heap, (now + service[index], FINISH, next(seq), (pod, index)))
                else:
                    self.arrive(now, index)
                index += 1
                continue
            _, kind, _, payload = heappop(heap)
            if kind == FINISH:
                pod, request = payload
                if pod.dead:
                    continue
                pod.running -= 1
                done[request] = True
                if pod.draining:
                    if pod.running == 0:
                        self.remove(now, pod)
                    continue
                free.append(pod)
                if self.queue:
                    self.drain_queue(now)
            elif kind == POD_READY:
                self.pod_ready(now, payload)
            elif kind == NODE_EXPIRE:
                self.node_expire(now, *payload)
            elif kind == SPOT_NOTICE:
                self.spot_notice(now, payload)
            elif kind == SPOT_KILL:
                self.spot_kill(now, payload)
            elif kind == KEDA_POLL:
                self.keda_poll(now)
                self.push(now + self.s.polling_s, KEDA_POLL)
            elif kind == HPA_SYNC:
                self.hpa_sync(now)
                self.push(now + self.s.hpa_sync_s, HPA_SYNC)
            elif kind == SAMPLE:
                total = int(np.searchsorted(self.all_arrivals, now, side="right"))
                self.sample(now, total - arrived_in_sample)
                arrived_in_sample = total
                self.push(now + SAMPLE_S, SAMPLE)

    def result(self, everything: np.ndarray, cached: np.ndarray, outputs: np.ndarray) -> SimResult:
        served = np.asarray(self.done, dtype=bool)
        waits = np.asarray(self.wait)[served]
        offset = self.s.throughput.ttft_s(self.s.prompt_tokens)
        ttft_gpu = waits + offset
        hits = int(cached.sum())
        ttfts = np.concatenate([np.full(hits, self.s.cache_hit_latency_s), ttft_gpu])
        return SimResult(
            horizon_s=self.horizon,
            requests=len(everything),
            cache_hits=hits,
            served=int(served.sum()),
            refused=self.counts["refused"],
            timed_out=self.counts["timed_out"],
            interrupted=self.counts["interrupted"],
            node_seconds=self.node_seconds,
            node_launches=self.counts["launches"],
            spot_interruptions=self.counts["spot"],
            waits=waits,
            ttfts=ttfts,
            starts=np.asarray(self.started)[served],
            prompt_tokens=float(served.sum()) * self.s.prompt_tokens,
            output_tokens=float(outputs[served].sum()),
            samples={key: np.asarray(values) for key, values in self.samples.items()},
            pod_ready_times=self.ready_times,
            ttft_gpu_offset_s=offset,
        )


def simulate(
    settings: SimSettings, horizon_s: float = WEEK_S, progress: Callable[[float], None] | None = None
) -> SimResult:
    simulation = Simulation(settings, horizon_s)
    return simulation.run(progress)
