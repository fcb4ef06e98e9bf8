"""dcgm-exporter on the GPU pool, scraped by Prometheus; Karpenter scraped for node launches and interruptions."""

from typing import Any

from k8s_schemas import validate_manifest

from components import contracts, upstream
from components.versions import DCGM_EXPORTER
from infra.offline import Graph

RELEASE = "kubernetes:helm.sh/v3:Release"
MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
# deployment/values.yaml `arguments` at tag 4.5.3-4.8.2.
CHART_DEFAULT_ARGUMENTS = ["-f", "/etc/dcgm-exporter/default-counters.csv"]
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


# --- The GPU pool's AMI family: Bottlerocket needs a workaround (components/upstream/bottlerocket.json) -----------

def _gpu_ami_family(graph: Graph) -> str:
    spec = graph.one(NODE_CLASS, "node-pools-gpu-ec2nodeclass").inputs["spec"]
    return str(spec["amiSelectorTerms"][0]["alias"]).split("@")[0]


def _exporter_container(values: dict[str, Any]) -> dict[str, Any]:
    """The exporter container as deployment/templates/daemonset.yaml (tag 4.5.3-4.8.2) renders it from these
    values: the chart's default image unless `image` is set, args from `arguments` (default: -f the default
    counters file), its fixed env entries then `extraEnv`, and `securityContext` as given."""
    facts = upstream.facts("bottlerocket")["dcgmExporter"]
    repository, tag = facts["chartDefaultImage"].rsplit(":", 1)
    image = {"repository": repository, "tag": tag, **values.get("image", {})}
    container = {
        "name": "exporter",
        "image": f"{image['repository']}:{image['tag']}",
        "args": values.get("arguments", CHART_DEFAULT_ARGUMENTS),
        "env": [{"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"}, *values.get("extraEnv", [])],
    }
    if "securityContext" in values:
        container["securityContext"] = values["securityContext"]
    return container


def test_prod_dcgm_exporter_carries_the_bottlerocket_workaround(prod_graph: Graph) -> None:
    release = prod_graph.one(RELEASE, "gpu-metrics")
    facts = upstream.facts("bottlerocket")["dcgmExporter"]
    assert _gpu_ami_family(prod_graph) == "bottlerocket", "premise: prod's GPU pool runs Bottlerocket"
    assert release.inputs["version"] == facts["chart"], f"{release.urn}: the facts were read at chart {facts['chart']}"
    container = _exporter_container(release.inputs["values"])
    # #636: the start-up ldconfig check fails there; the exporter's own switch for it (pkg/cmd/app.go).
    switch = {"name": facts["startupValidation"]["disableEnv"], "value": "true"}
    assert switch in container["env"], f"{release.urn}: no {switch} on Bottlerocket"
    # GPUs for a container that requests none: CAP_SYS_ADMIN, not privileged (bottlerocket#3992).
    security = container["securityContext"]
    assert facts["gpuAccessWithoutRequest"]["capability"] in security["capabilities"]["add"], release.urn
    assert security.get("privileged") is not True and security["runAsUser"] == 0, release.urn
    # runtimeClassName nvidia is the route of #612/#724 elsewhere; Bottlerocket has no such RuntimeClass.
    assert not release.inputs["values"].get("runtimeClassName"), release.urn


def test_prod_dcgm_exporter_runs_the_recorded_image_and_counters(prod_graph: Graph) -> None:
    """The chart cannot override the command (recorded), so the image's entrypoint runs with the chart's args: the
    image must be the one whose start-up check the switch disables, reading the counters file it ships."""
    facts = upstream.facts("bottlerocket")["dcgmExporter"]
    assert facts["chartCommandOverride"] is False
    container = _exporter_container(prod_graph.one(RELEASE, "gpu-metrics").inputs["values"])
    assert "command" not in container
    assert container["image"] == f"nvcr.io/nvidia/k8s/dcgm-exporter:{facts['images']['distroless']['tag']}"
    assert facts["images"]["distroless"]["tag"].startswith(facts["tag"]) and facts["tag"].endswith(facts["chart"])
    assert container["args"] == CHART_DEFAULT_ARGUMENTS
    assert facts["countersFile"].startswith(f"{container['args'][1]} "), "the counters file the image ships"


def test_dev_dcgm_exporter_keeps_the_chart_defaults_on_al2023(dev_graph: Graph) -> None:
    release = dev_graph.one(RELEASE, "gpu-metrics")
    assert _gpu_ami_family(dev_graph) == "al2023", "premise: dev's GPU pool runs AL2023"
    values = release.inputs["values"]
    assert not {"extraEnv", "securityContext", "arguments", "runtimeClassName"} & set(values), release.urn
    # The image is stated (one home for the prefetched-image list) but is the chart's own default: deployment/
    # values.yaml at tag 4.5.3-4.8.2.
    assert values["image"] == {"repository": "nvcr.io/nvidia/k8s/dcgm-exporter", "tag": "4.5.3-4.8.2-distroless"}


def test_exporter_container_validates_as_a_pod(graph: Graph) -> None:
    """The values that reach the exporter container (env, securityContext) as Kubernetes' strict schema sees them."""
    container = _exporter_container(graph.one(RELEASE, "gpu-metrics").inputs["values"])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "exporter"}, "spec": {"containers": [container]}}
    assert validate_manifest(pod) == []
