"""Traces: the gateway exports OTLP spans to an OpenTelemetry Collector that forwards them to X-Ray, sampled
per stack."""


from graph_helpers import pod_identity_grant

from infra.offline import Graph

RELEASE = "kubernetes:helm.sh/v3:Release"
# Top-level keys of charts/opentelemetry-collector/values.yaml at tag opentelemetry-collector-0.170.0.
CHART_KEYS = {
    "nameOverride", "fullnameOverride", "mode", "apiVersion", "namespaceOverride", "presets", "configMap",
    "internalTelemetryViaOTLP", "rewriteDeprecatedComponentNames", "config", "alternateConfig", "image",
    "imagePullSecrets", "command", "serviceAccount", "clusterRole", "podSecurityContext", "securityContext",
    "nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName", "runtimeClassName",
    "terminationGracePeriodSeconds", "extraEnvs", "extraEnvsFrom", "extraVolumes", "extraVolumeMounts",
    "extraManifests", "ports", "useGOMEMLIMIT", "resizePolicy", "resources", "enableConfigChecksumAnnotation",
    "podAnnotations", "podLabels", "additionalLabels", "hostNetwork", "hostPID", "hostAliases", "dnsPolicy",
    "dnsConfig", "schedulerName", "replicaCount", "revisionHistoryLimit", "annotations", "extraContainers",
    "initContainers", "lifecycleHooks", "livenessProbe", "readinessProbe", "startupProbe", "service", "ingress",
    "httproute", "podMonitor", "serviceMonitor", "podDisruptionBudget", "autoscaling", "rollout", "prometheusRule",
    "statefulset", "networkPolicy", "shareProcessNamespace",
}


def gateway_env(graph: Graph) -> dict[str, str]:
    spec = graph.one("kubernetes:apps/v1:Deployment", "gateway-deployment").inputs["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "gateway"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_collector_chart_is_pinned_with_its_required_values(graph: Graph) -> None:
    release = graph.one(RELEASE, "tracing").inputs
    assert (release["chart"], release["version"], release["repositoryOpts"]["repo"]) == (
        "opentelemetry-collector", "0.170.0", "https://open-telemetry.github.io/opentelemetry-helm-charts"
    )
    values = release["values"]
    assert set(values) <= CHART_KEYS
    # templates/NOTES.txt fails the install without mode and image.repository, or without health_check.
    assert values["mode"] == "deployment"
    assert values["image"]["repository"] == "otel/opentelemetry-collector-contrib"  # has the awsxray exporter
    config = values["alternateConfig"]
    assert "health_check" in config["service"]["extensions"]
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"] and traces["exporters"] == ["awsxray"]
    assert config["exporters"]["awsxray"]["region"] == graph.config.region


def test_gateway_sends_spans_to_the_collector_service(graph: Graph) -> None:
    release = graph.one(RELEASE, "tracing").inputs
    # The Service is named after the release; ports.otlp-http.servicePort is 4318 (values.yaml).
    expected = f"http://{release['name']}.{release['namespace']}.svc.cluster.local:4318"
    env = gateway_env(graph)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == expected
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"


def test_prod_samples_five_percent_dev_everything(dev_graph: Graph, prod_graph: Graph) -> None:
    assert gateway_env(prod_graph)["OTEL_TRACES_SAMPLER_ARG"] == "0.05"
    assert gateway_env(dev_graph)["OTEL_TRACES_SAMPLER_ARG"] == "1.0"


def test_collector_writes_to_xray_through_pod_identity(graph: Graph) -> None:
    statement = pod_identity_grant(graph, "tracing", "tracing-collector")
    assert set(statement["Action"]) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
