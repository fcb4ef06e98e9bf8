"""Names and labels that platform add-ons and workloads must agree on, defined once.

Karpenter's pools label and taint their nodes with these; workloads select and tolerate exactly these;
Prometheus monitors find pods by these labels in this namespace.
"""

SERVING_NAMESPACE = "llm-serving"
MONITORING_NAMESPACE = "monitoring"

POOL_LABEL_KEY = "llm-platform/pool"
GPU_POOL = "gpu"
CPU_POOL = "cpu"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
# Every pool launches this CPU architecture, and the stack builds its images for it.
NODE_ARCHITECTURE = "amd64"

APP_NAME_LABEL = "app.kubernetes.io/name"
VLLM_APP = "vllm"
GATEWAY_APP = "gateway"
# KEDA names the HPA it manages keda-hpa-<ScaledObject> (kedacore/keda controllers/keda/hpa.go, getDefaultHpaName).
VLLM_HPA = f"keda-hpa-{VLLM_APP}"
VLLM_PORT = 8000
GATEWAY_PORT = 8080
METRICS_PORT_NAME = "http"

# Labels the Prometheus operator puts on every Prometheus server pod (prometheus-operator
# pkg/prometheus/server/statefulset.go, podSelectorLabels): what a NetworkPolicy lets scrape a workload.
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
# Set by Kubernetes on every namespace (1.22+): how a NetworkPolicy selects a namespace by name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
