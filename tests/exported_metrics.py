"""The metric names something in the stack exports, each family with the upstream source it was read from: the
independent record that dashboard and rule queries are checked against. Counters are exposed with `_total`,
histograms as `_bucket`/`_sum`/`_count`."""

import re

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _histograms(*names: str) -> set[str]:
    return {f"{name}{suffix}" for name in names for suffix in HISTOGRAM_SUFFIXES}


EXPORTED: dict[str, set[str]] = {
    # vLLM V1 (REFERENCE.md; vllm-project/vllm vllm/v1/metrics/loggers.py).
    "vllm": {
        "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
        "vllm:num_preemptions_total", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
    } | _histograms(
        "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds",
    ),
    # Our gateway: serving/gateway/metrics.py.
    "gateway": {
        "gateway_requests_total", "gateway_rate_limited_total", "gateway_cache_requests_total",
        "gateway_cache_local_hits_total", "gateway_rate_limit_leases_total",
        "gateway_inflight_requests", "gateway_pending_requests",
    } | _histograms("gateway_request_duration_seconds", "gateway_upstream_ttfb_seconds", "gateway_overhead_seconds"),
    # NVIDIA/dcgm-exporter etc/default-counters.csv at tag 4.5.3-4.8.2 (the chart's default counters).
    "dcgm-exporter": {
        "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    },
    # kubernetes/kube-state-metrics docs/metrics/ at v2.18.0 (the app version of kube-state-metrics chart 7.2.2,
    # the dependency of kube-prometheus-stack 82.18.0).
    "kube-state-metrics": {
        "kube_node_labels", "kube_pod_container_status_restarts_total", "kube_pod_container_resource_limits",
        "kube_horizontalpodautoscaler_status_desired_replicas", "kube_horizontalpodautoscaler_status_current_replicas",
        "kube_horizontalpodautoscaler_spec_max_replicas", "kube_deployment_status_replicas_ready",
        "kube_deployment_spec_replicas", "kube_deployment_status_replicas_updated",
        # internal/store/pod.go: creation and Ready timestamps, for the cold-start recording rule.
        "kube_pod_created", "kube_pod_status_ready_time",
    },
    # The kubelet's cAdvisor endpoint, scraped by kube-prometheus-stack's kubelet ServiceMonitor (cadvisor: true).
    "kubelet-cadvisor": {"container_memory_working_set_bytes"},
    # kubernetes-sigs/karpenter pkg/metrics/metrics.go and aws/karpenter-provider-aws
    # pkg/controllers/interruption/metrics.go, both at v1.14.1.
    "karpenter": {
        "karpenter_nodeclaims_created_total", "karpenter_nodeclaims_terminated_total",
        "karpenter_nodeclaims_disrupted_total", "karpenter_interruption_received_messages_total",
    },
    # Prometheus itself: one `up` series per scrape target.
    "prometheus": {"up"},
}
ALL_EXPORTED = set().union(*EXPORTED.values())

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
             "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers outside strings, label matchers, ranges and
    grouping clauses that are not functions, aggregations or keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", text)
    return {name for name in names if name.lower() not in _KEYWORDS}
