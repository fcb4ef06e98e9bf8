"""dcgm-exporter on the GPU pool, scraped by Prometheus; Karpenter scraped for node launches and interruptions."""

from components import contracts
from components.versions import DCGM_EXPORTER
from infra.offline import Graph

RELEASE = "kubernetes:helm.sh/v3:Release"
MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
# Top-level keys of NVIDIA/dcgm-exporter deployment/values.yaml at tag 4.5.3-4.8.2 (chart 4.8.2).
DCGM_CHART_KEYS = {
    "image", "arguments", "imagePullSecrets", "nameOverride", "fullnameOverride", "namespaceOverride", "hostPID",
    "runtimeClassName", "priorityClassName", "hostNetwork", "serviceAccount", "rollingUpdate", "podLabels",
    "podAnnotations", "podSecurityContext", "securityContext", "service", "resources", "serviceMonitor",
    "nodeSelector", "tolerations", "affinity", "extraHostVolumes", "extraConfigMapVolumes", "extraVolumeMounts",
    "extraEnv", "kubeletPath", "tlsServerConfig", "basicAuth", "kubernetes", "debugDump", "kubernetesDRA",
}


def test_dcgm_exporter_chart_is_pinned_with_known_values(graph: Graph) -> None:
    release = graph.one(RELEASE, "gpu-metrics").inputs
    assert (release["chart"], release["version"], release["repositoryOpts"]["repo"]) == (
        "dcgm-exporter", "4.8.2", "https://nvidia.github.io/dcgm-exporter/helm-charts"
    ) == (DCGM_EXPORTER.chart, DCGM_EXPORTER.version, DCGM_EXPORTER.repository)
    assert set(release["values"]) <= DCGM_CHART_KEYS
    assert release["namespace"] == contracts.MONITORING_NAMESPACE


def test_dcgm_exporter_runs_on_gpu_nodes_and_tolerates_their_taint(graph: Graph) -> None:
    values = graph.one(RELEASE, "gpu-metrics").inputs["values"]
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "llm-platform/pool", "operator": "In", "values": ["gpu"]}]
    assert {(t["key"], t["effect"]) for t in values["tolerations"]} == {("nvidia.com/gpu", "NoSchedule")}
    assert values["serviceMonitor"] == {"enabled": False}  # ours, created after the CRDs
    assert values["resources"]["limits"]["memory"]


def test_prometheus_scrapes_dcgm_exporter_with_its_pod_labels(graph: Graph) -> None:
    spec = graph.one(MONITOR, "gpu-metrics-monitor").inputs["spec"]
    # The chart's Service: label app.kubernetes.io/name=dcgm-exporter, port "metrics" (templates/service.yaml).
    assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/name": "dcgm-exporter"}}
    assert spec["namespaceSelector"] == {"matchNames": ["monitoring"]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True


def test_prometheus_scrapes_karpenter(graph: Graph) -> None:
    spec = graph.one(MONITOR, "slo-karpenter-monitor").inputs["spec"]
    karpenter = graph.one(RELEASE, "karpenter").inputs
    assert spec["namespaceSelector"] == {"matchNames": [karpenter["namespace"]]}
    # charts/karpenter v1.14.1 templates/service.yaml: port http-metrics, selector app.kubernetes.io/name=karpenter.
    assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/name": "karpenter"}}
    assert [endpoint["port"] for endpoint in spec["endpoints"]] == ["http-metrics"]
