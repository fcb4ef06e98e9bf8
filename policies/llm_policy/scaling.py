"""Autoscaling: KEDA ScaledObjects (keda.sh/v1alpha1) and HorizontalPodAutoscalers."""

import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from .common import ADVISORY, HIGH, MEDIUM, get, items, number, of_type, resource_rule, stack_rule
from .workloads import DEPLOYMENT, containers

SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
KEDA_DEFAULT_MAX = 100  # keda.sh ScaledObject maxReplicaCount default

# What vLLM's V1 engine exports: PrometheusStatLogger in vllm-project/vllm vllm/v1/metrics/loggers.py, without
# the names later releases removed (vllm:gpu_cache_usage_perc -> kv_cache_usage_perc, gpu_prefix_cache_*,
# time_per_output_token_seconds -> inter_token_latency_seconds). A newer metric can be allowed in allowedMetrics.
VLLM_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
               "vllm:cache_config_info", "vllm:lora_requests_info")
VLLM_COUNTERS = ("vllm:prompt_tokens", "vllm:generation_tokens", "vllm:request_success", "vllm:num_preemptions",
                 "vllm:prefix_cache_queries", "vllm:prefix_cache_hits")
VLLM_HISTOGRAMS = (
    "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds", "vllm:request_inference_time_seconds", "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds", "vllm:request_time_per_output_token_seconds",
    "vllm:request_prompt_tokens", "vllm:request_generation_tokens", "vllm:iteration_tokens_total",
    "vllm:request_max_num_generation_tokens", "vllm:request_params_n", "vllm:request_params_max_tokens",
)
# NVIDIA/dcgm-exporter etc/default-counters.csv (the chart's default counters, 4.x): what a GPU trigger may read.
DCGM_METRICS = frozenset({
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
})
VLLM_METRICS = frozenset(
    [*VLLM_GAUGES, *VLLM_COUNTERS, *(f"{c}_total" for c in VLLM_COUNTERS)]
    + [f"{h}{suffix}" for h in VLLM_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")]
)
PROMQL_KEYWORDS = frozenset(("by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                             "unless", "offset", "inf", "nan"))
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_GROUPINGS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query selects (functions, keywords, label matchers and groupings left out)."""
    text = _GROUPINGS.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub('""', query)))
    return {name for name in _NAME.findall(text) if name.lower() not in PROMQL_KEYWORDS}


def _prometheus_triggers(props: Mapping[str, Any]) -> list[Any]:
    return [t for t in items(get(props, "spec", "triggers")) if get(t, "type") == "prometheus"]


def _known_metrics(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    allowed = set(settings["allowedMetrics"]) | VLLM_METRICS | DCGM_METRICS
    for trigger in _prometheus_triggers(props):
        for name in sorted(metric_names(str(get(trigger, "metadata", "query", default="")))):
            if name not in allowed:
                hint = " (vLLM's names use ':' after 'vllm')" if name.startswith("vllm_") else ""
                yield (f"trigger {get(trigger, 'name')}: {name} is not a metric vLLM, dcgm-exporter or the gateway "
                       f"exports{hint}")


def _max_replicas(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if args.resource_type == SCALED_OBJECT:
        maximum = number(get(props, "spec", "maxReplicaCount"))
        if maximum is None:
            yield f"maxReplicaCount is not set (KEDA's default is {KEDA_DEFAULT_MAX})"
            return
    else:
        maximum = number(get(props, "spec", "maxReplicas"), 0) or 0
    if maximum > settings["maxReplicas"]:
        yield f"at most {maximum:g} replicas, above this stack's bound of {settings['maxReplicas']:g}"


def _scale_to_zero(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if (number(get(props, "spec", "minReplicaCount"), 0) or 0) > 0:
        return
    # A cron trigger scales up from zero on its schedule, with no pod and no metric (keda.sh scalers/cron).
    if any(get(t, "type") == "cron" for t in items(get(props, "spec", "triggers"))):
        return
    queries = [str(get(t, "metadata", "query", default="")) for t in _prometheus_triggers(props)]
    activators = set(settings["activationMetrics"])
    if not any(metric_names(q) & activators for q in queries):
        yield (
            f"scales to zero but no trigger reads {sorted(activators)}: with no vLLM pod there is no vLLM metric, "
            "so nothing would ever scale it up again"
        )


def _stabilization(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    behavior = get(props, "spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", default={})
    # Kubernetes' HPA defaults: scale-down window 300 s, scale-up 0 s.
    down = number(get(behavior, "scaleDown", "stabilizationWindowSeconds"), 300) or 0
    up = number(get(behavior, "scaleUp", "stabilizationWindowSeconds"), 0) or 0
    if down < settings["minScaleDownWindowS"]:
        yield f"scale-down stabilization window {down:g} s is shorter than {settings['minScaleDownWindowS']:g} s"
    if up > down:
        yield f"scale-up window {up:g} s is longer than the scale-down window {down:g} s"


def _target_deployment(resources: list[PolicyResource], scaled: PolicyResource) -> PolicyResource | None:
    name = get(scaled.props, "spec", "scaleTargetRef", "name")
    namespace = get(scaled.props, "metadata", "namespace")
    return next((d for d in of_type(resources, DEPLOYMENT) if get(d.props, "metadata", "name") == name
                 and get(d.props, "metadata", "namespace") == namespace), None)


def _max_num_seqs(deployment: PolicyResource) -> tuple[bool, float | None]:
    """(is it a vLLM server, its --max-num-seqs)."""
    for container in containers(deployment.props, DEPLOYMENT, init=False):
        args = [str(a) for a in items(get(container, "command")) + items(get(container, "args"))]
        if "vllm" not in str(get(container, "image", default="")) and "vllm" not in " ".join(args[:2]):
            continue
        for index, arg in enumerate(args):
            if arg == "--max-num-seqs" and index + 1 < len(args):
                return True, number(args[index + 1])
            if arg.startswith("--max-num-seqs="):
                return True, number(arg.split("=", 1)[1])
        return True, None
    return False, None


def _per_pod_target(props: Mapping[str, Any]) -> float | None:
    modifiers = get(props, "spec", "advanced", "scalingModifiers")
    if get(modifiers, "formula"):
        return number(get(modifiers, "target"))
    running = [number(get(t, "metadata", "threshold")) for t in _prometheus_triggers(props)
               if "vllm:num_requests_running" in metric_names(str(get(t, "metadata", "query", default="")))]
    return min([r for r in running if r is not None], default=None)


def _target_vs_batch(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for scaled in of_type(resources, SCALED_OBJECT):
        deployment = _target_deployment(resources, scaled)
        if deployment is None:
            continue
        is_vllm, batch = _max_num_seqs(deployment)
        if not is_vllm:
            continue
        target = _per_pod_target(scaled.props)
        if batch is None:
            yield f"{deployment.name} does not set --max-num-seqs: the per-pod target has nothing to match", \
                deployment.urn
        elif target is None or not 0 < target <= batch:
            yield (
                f"per-pod target {target} of ScaledObject {scaled.name} is not within vLLM's --max-num-seqs "
                f"{batch:g}: pods saturate before KEDA adds more", scaled.urn
            )


SCALING_RULES = [
    resource_rule(
        "keda-known-metrics",
        "ScaledObject Prometheus queries name metrics vLLM (V1), dcgm-exporter or the gateway really export.",
        types=(SCALED_OBJECT,),
        severity=HIGH,
        remediation="Use vllm:num_requests_running / vllm:num_requests_waiting (':' not '_') and "
        "gateway_pending_requests; a query over a missing metric returns nothing and never scales.",
        check=_known_metrics,
        config={"allowedMetrics": {"type": "array", "items": {"type": "string"},
                                   "default": ["gateway_pending_requests", "gateway_inflight_requests", "up"]}},
    ),
    resource_rule(
        "autoscaling-max-replicas",
        "Every ScaledObject and HPA has a maximum replica count within the stack's bound.",
        types=(SCALED_OBJECT, HPA),
        severity=HIGH,
        remediation="Set serving.scaling.maxReplicas (or the gateway's maxReplicas) within the bound, or raise "
        "the bound in this stack's policy config with the budget.",
        check=_max_replicas,
        config={"maxReplicas": {"type": "number", "default": 10}},
    ),
    resource_rule(
        "keda-scale-to-zero-activation",
        "A ScaledObject that scales to zero activates on the gateway's held requests.",
        types=(SCALED_OBJECT,),
        severity=HIGH,
        remediation="Add a trigger on gateway_pending_requests (activationThreshold 0), or keep minReplicaCount 1.",
        check=_scale_to_zero,
        config={"activationMetrics": {"type": "array", "items": {"type": "string"},
                                      "default": ["gateway_pending_requests"]}},
    ),
    resource_rule(
        "keda-stabilization",
        "Scaling does not flap: scale-down waits at least 5 minutes and longer than scale-up.",
        types=(SCALED_OBJECT,),
        severity=MEDIUM,
        remediation="spec.advanced.horizontalPodAutoscalerConfig.behavior: scaleUp window 30 s, scaleDown 300 s.",
        level=ADVISORY,
        check=_stabilization,
        config={"minScaleDownWindowS": {"type": "number", "default": 300}},
    ),
    stack_rule(
        "keda-target-matches-max-num-seqs",
        "KEDA's per-pod target is positive and at most vLLM's --max-num-seqs.",
        severity=MEDIUM,
        remediation="Set serving.vllm maxNumSeqs explicitly and serving.scaling.targetPerPod at or below it.",
        check=_target_vs_batch,
    ),
]
