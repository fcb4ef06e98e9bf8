"""Kubernetes workloads: images, resources, probes, security context, shutdown, disruption budgets, network
policy and what the public Ingress exposes."""

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from .common import (
    CRITICAL,
    HIGH,
    MEDIUM,
    flag,
    get,
    items,
    labels_match,
    number,
    of_type,
    resource_rule,
    stack_rule,
)

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LONG_RUNNING = (DEPLOYMENT, "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet")
WORKLOADS = (*LONG_RUNNING, "kubernetes:apps/v1:ReplicaSet", "kubernetes:batch/v1:Job",
             "kubernetes:batch/v1:CronJob", "kubernetes:core/v1:Pod")
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
SERVICE = "kubernetes:core/v1:Service"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
GPU = "nvidia.com/gpu"
DEFAULT_GRACE_S = 30  # Kubernetes' default terminationGracePeriodSeconds
# Images that do not allow a non-root user or a read-only root: vllm/vllm-openai sets no USER (vllm-project/vllm
# docker/Dockerfile, target vllm-openai) and writes its caches under /root/.cache.
# aws-cli/aws-cli (Amazon Linux 2023, no USER) syncs vLLM's compile cache into vLLM's root-owned directory on the
# node (components/compile_cache.py): root, but with a read-only root filesystem.
ROOT_IMAGES = ["vllm/vllm-openai", "public.ecr.aws/aws-cli/aws-cli"]
WRITABLE_ROOT_IMAGES = ["vllm/vllm-openai"]


def pod_spec(props: Mapping[str, Any], resource_type: str) -> Any:
    if resource_type == "kubernetes:core/v1:Pod":
        return get(props, "spec")
    if resource_type == "kubernetes:batch/v1:CronJob":
        return get(props, "spec", "jobTemplate", "spec", "template", "spec")
    return get(props, "spec", "template", "spec")


def pod_labels(props: Mapping[str, Any]) -> Any:
    return get(props, "spec", "template", "metadata", "labels", default={})


def containers(props: Mapping[str, Any], resource_type: str, init: bool = True) -> list[Any]:
    spec = pod_spec(props, resource_type)
    found = items(get(spec, "containers"))
    return found + items(get(spec, "initContainers")) if init else found


def _image_pinned(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    for container in containers(props, args.resource_type):
        image = str(get(container, "image", default=""))
        name = get(container, "name")
        repository, _, digest = image.partition("@")
        last = repository.rsplit("/", 1)[-1]
        tag = last.partition(":")[2]
        if digest:
            continue
        if settings["requireDigest"]:
            yield f"container {name}: image {image!r} is not pinned by digest (@sha256:...)"
        elif not tag or tag == "latest":
            yield f"container {name}: image {image!r} is not pinned (tag {tag or 'missing'} means latest)"


def _resources(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    for container in containers(props, args.resource_type):
        missing = [
            f"{kind}.{resource}"
            for kind in ("requests", "limits")
            for resource in ("cpu", "memory")
            if get(container, "resources", kind, resource) is None
        ]
        if missing:
            yield f"container {get(container, 'name')}: no {', '.join(missing)}"


def _gpu_requests(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    for container in containers(props, args.resource_type):
        requests = get(container, "resources", "requests", GPU)
        limits = get(container, "resources", "limits", GPU)
        if (requests is not None or limits is not None) and number(requests) != number(limits):
            yield f"container {get(container, 'name')}: {GPU} request {requests} differs from limit {limits}"


def _probes(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    for container in containers(props, args.resource_type, init=False):
        missing = [probe for probe in ("readinessProbe", "livenessProbe") if get(container, probe) is None]
        if missing:
            yield f"container {get(container, 'name')}: no {' or '.join(missing)}"


def _exempt(container: Any, prefixes: list[str]) -> bool:
    image = str(get(container, "image", default=""))
    # Also through a registry mirror such as the ECR pull-through cache (<registry>/<prefix>/<repository>:<tag>).
    return any(image.startswith(prefix) or f"/{prefix}:" in image or f"/{prefix}@" in image for prefix in prefixes)


def _non_root(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    pod = get(pod_spec(props, args.resource_type), "securityContext", default={})
    for container in containers(props, args.resource_type):
        context = get(container, "securityContext", default={})
        name = get(container, "name")
        if get(context, "allowPrivilegeEscalation") is not False or flag(get(context, "privileged")):
            yield f"container {name}: allowPrivilegeEscalation is not false"
        if _exempt(container, list(settings["rootImages"])):
            continue
        non_root = get(context, "runAsNonRoot", default=get(pod, "runAsNonRoot"))
        user = number(get(context, "runAsUser", default=get(pod, "runAsUser")))
        if non_root is not True and not (user is not None and user > 0):
            yield f"container {name}: may run as root (set runAsNonRoot true and a non-zero runAsUser)"


def _read_only_root(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    for container in containers(props, args.resource_type):
        if _exempt(container, list(settings["writableRootImages"])):
            continue
        if get(container, "securityContext", "readOnlyRootFilesystem") is not True:
            yield f"container {get(container, 'name')}: root filesystem is writable (mount emptyDirs where it writes)"


def _flag_value(args: list[str], flag_name: str) -> float | None:
    for index, arg in enumerate(args):
        if arg == flag_name and index + 1 < len(args):
            return number(args[index + 1])
        if arg.startswith(flag_name + "="):
            return number(arg.split("=", 1)[1])
    return None


def _drain_seconds(container: Any, settings: Mapping[str, Any]) -> float:
    arguments = [str(a) for a in items(get(container, "command")) + items(get(container, "args"))]
    drains = [_flag_value(arguments, name) for name in settings["drainFlags"]]
    drains += [number(get(env, "value")) for env in items(get(container, "env")) if get(env, "name") in
               settings["drainEnv"]]
    return max([d for d in drains if d is not None], default=0.0)


def _pre_stop_seconds(container: Any) -> float:
    pre_stop = get(container, "lifecycle", "preStop", default={})
    sleep = number(get(pre_stop, "sleep", "seconds"))
    if sleep is not None:
        return sleep
    command = [str(part) for part in items(get(pre_stop, "exec", "command"))]
    return next((number(part, 0) or 0 for part in command[1:] if command and "sleep" in command[0]), 0.0)


def _grace_period(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    spec = pod_spec(props, args.resource_type)
    grace = number(get(spec, "terminationGracePeriodSeconds"), DEFAULT_GRACE_S) or 0
    for container in containers(props, args.resource_type, init=False):
        needed = _pre_stop_seconds(container) + _drain_seconds(container, settings)
        if needed > grace:
            yield (
                f"container {get(container, 'name')}: preStop + drain take {needed:g} s but "
                f"terminationGracePeriodSeconds is {grace:g}: in-flight requests are killed"
            )


def _namespace(resource: PolicyResource) -> Any:
    return get(resource.props, "metadata", "namespace", default="default")


def _pdb(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    budgets = of_type(resources, PDB)
    for deployment in of_type(resources, DEPLOYMENT):
        if _namespace(deployment) not in settings["namespaces"]:
            continue
        covered = any(
            _namespace(budget) == _namespace(deployment)
            and labels_match(get(budget.props, "spec", "selector"), pod_labels(deployment.props))
            for budget in budgets
        )
        if not covered:
            yield f"Deployment {deployment.name} has no PodDisruptionBudget: a node drain can take all its pods", \
                deployment.urn


def _admits_only(rule: Any, gateway: Mapping[str, Any], namespaces: list[str]) -> bool:
    peers = items(get(rule, "from"))
    if not peers:
        return False  # an ingress rule without `from` admits every source
    for peer in peers:
        if get(peer, "ipBlock") is not None:
            return False
        namespace = get(peer, "namespaceSelector")
        if namespace is not None:
            if get(namespace, "matchLabels", "kubernetes.io/metadata.name") not in namespaces:
                return False
        elif not (get(peer, "podSelector") and labels_match(gateway, get(peer, "podSelector", "matchLabels"))):
            return False
    return True


def _protects(policy: PolicyResource, pods: Any, settings: Mapping[str, Any]) -> bool:
    spec = get(policy.props, "spec", default={})
    types = [str(t) for t in items(get(spec, "policyTypes"))] or ["Ingress"]
    return (
        "Ingress" in types
        and labels_match(get(spec, "podSelector"), pods)
        and all(_admits_only(rule, settings["gatewayLabels"], list(settings["allowedNamespaces"]))
                for rule in items(get(spec, "ingress")))
    )


def _network_policy(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for deployment in of_type(resources, DEPLOYMENT):
        pods = pod_labels(deployment.props)
        if not labels_match(settings["servingLabels"], pods):
            continue
        policies = [p for p in of_type(resources, NETWORK_POLICY) if _namespace(p) == _namespace(deployment)]
        if not any(_protects(policy, pods, settings) for policy in policies):
            yield (
                f"no NetworkPolicy limits ingress to {deployment.name} pods to the gateway "
                f"(and namespaces {list(settings['allowedNamespaces'])})", deployment.urn
            )


def _is_public(ingress: PolicyResource) -> bool:
    annotations = get(ingress.props, "metadata", "annotations", default={})
    return get(annotations, "alb.ingress.kubernetes.io/scheme") == "internet-facing"


def _routes_metrics(path: Any, metrics_path: str) -> bool:
    value = str(get(path, "path", default="/"))
    kind = get(path, "pathType", default="Prefix")
    if kind == "Exact":
        return value == metrics_path
    return metrics_path.startswith(value.rstrip("/") + "/") or value.rstrip("/") == metrics_path


def _scraped_ports(resources: list[PolicyResource], service: PolicyResource) -> set[str]:
    """Port names (and numbers) of `service` that a ServiceMonitor scrapes for metrics."""
    labels = get(service.props, "metadata", "labels", default={})
    ports: set[str] = set()
    for monitor in of_type(resources, SERVICE_MONITOR):
        namespaces = items(get(monitor.props, "spec", "namespaceSelector", "matchNames")) or [_namespace(monitor)]
        if _namespace(service) in namespaces and labels_match(get(monitor.props, "spec", "selector"), labels):
            ports.update(str(get(e, "port", default=get(e, "targetPort"))) for e in
                         items(get(monitor.props, "spec", "endpoints")))
    return ports


def _backend_port(path: Any) -> tuple[Any, str]:
    service = get(path, "backend", "service", default={})
    port = get(service, "port", "name", default=get(service, "port", "number"))
    return get(service, "name"), str(int(port) if isinstance(port, float) else port)


def _metrics_not_public(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    metrics_path = settings["metricsPath"]
    for ingress in filter(_is_public, of_type(resources, INGRESS)):
        paths = [p for rule in items(get(ingress.props, "spec", "rules")) for p in items(get(rule, "http", "paths"))]
        # A more specific /metrics rule sent to an ALB action (fixed response) wins over the catch-all.
        blocked = any(_routes_metrics(p, metrics_path) and _backend_port(p)[1] == "use-annotation"
                      and str(get(p, "path")) != "/" for p in paths)
        if blocked:
            continue
        services = {get(s.props, "metadata", "name"): s for s in of_type(resources, SERVICE)
                    if _namespace(s) == _namespace(ingress)}
        for path in paths:
            name, port = _backend_port(path)
            service = services.get(name)
            if service is not None and _routes_metrics(path, metrics_path) and port in _scraped_ports(
                resources, service
            ):
                yield (
                    f"internet-facing Ingress {ingress.name} routes {metrics_path} (path {get(path, 'path')!r}) to "
                    f"service {name} port {port}, which serves Prometheus metrics", ingress.urn
                )


WORKLOAD_RULES = [
    resource_rule(
        "k8s-image-pinned",
        "Every container image is pinned by a tag or digest, never latest.",
        types=WORKLOADS,
        severity=CRITICAL,
        remediation="Pin images in components/versions.py (vllm/vllm-openai:v<version>, or @sha256:...).",
        check=_image_pinned,
        config={"requireDigest": {"type": "boolean", "default": False}},
    ),
    resource_rule(
        "k8s-resources",
        "Every container sets CPU and memory requests and limits.",
        types=WORKLOADS,
        severity=MEDIUM,
        remediation="Set resources.requests and resources.limits (cpu, memory) in the component's config.",
        check=_resources,
    ),
    resource_rule(
        "k8s-gpu-requests-equal-limits",
        "A container's nvidia.com/gpu request equals its limit (extended resources cannot be overcommitted).",
        types=WORKLOADS,
        severity=HIGH,
        remediation="Set the same nvidia.com/gpu count under requests and limits.",
        check=_gpu_requests,
    ),
    resource_rule(
        "k8s-probes",
        "Every long-running container has a readiness and a liveness probe.",
        types=LONG_RUNNING,
        severity=HIGH,
        remediation="Add readinessProbe and livenessProbe (and a startupProbe for slow starts such as vLLM).",
        check=_probes,
    ),
    resource_rule(
        "k8s-run-as-non-root",
        "Containers run as a non-root user without privilege escalation, unless their image needs root.",
        types=WORKLOADS,
        severity=HIGH,
        remediation="securityContext: runAsNonRoot true, runAsUser > 0, allowPrivilegeEscalation false; list an "
        "image that cannot run unprivileged in this rule's rootImages config, with the reason.",
        check=_non_root,
        config={"rootImages": {"type": "array", "items": {"type": "string"}, "default": ROOT_IMAGES}},
    ),
    resource_rule(
        "k8s-read-only-root-filesystem",
        "Containers have a read-only root filesystem, unless their image must write to it.",
        types=WORKLOADS,
        severity=MEDIUM,
        remediation="Set readOnlyRootFilesystem true and mount emptyDirs where the process writes; list an image "
        "that cannot in this rule's writableRootImages config.",
        check=_read_only_root,
        config={"writableRootImages": {"type": "array", "items": {"type": "string"}, "default": WRITABLE_ROOT_IMAGES}},
    ),
    resource_rule(
        "k8s-graceful-shutdown",
        "terminationGracePeriodSeconds covers the preStop sleep plus the drain timeout.",
        types=LONG_RUNNING,
        severity=MEDIUM,
        remediation="Raise terminationGracePeriodSeconds to at least preStop + drain (vLLM --shutdown-timeout, "
        "gateway drainTimeoutS).",
        check=_grace_period,
        config={
            "drainFlags": {"type": "array", "items": {"type": "string"}, "default": ["--shutdown-timeout"]},
            "drainEnv": {"type": "array", "items": {"type": "string"}, "default": ["GATEWAY_DRAIN_TIMEOUT_S"]},
        },
    ),
    stack_rule(
        "k8s-pod-disruption-budget",
        "Every serving Deployment has a PodDisruptionBudget.",
        severity=MEDIUM,
        remediation="Add a policy/v1 PodDisruptionBudget selecting the Deployment's pods (maxUnavailable 1).",
        check=_pdb,
        config={"namespaces": {"type": "array", "items": {"type": "string"}, "default": ["llm-serving"]}},
    ),
    stack_rule(
        "k8s-vllm-network-policy",
        "A NetworkPolicy lets only the gateway (and Prometheus' namespace) reach the vLLM pods.",
        severity=HIGH,
        remediation="Add a networking.k8s.io/v1 NetworkPolicy selecting the vLLM pods with policyTypes [Ingress] "
        "and ingress only from the gateway's pods and the monitoring namespace.",
        check=_network_policy,
        config={
            "servingLabels": {"type": "object", "default": {"app.kubernetes.io/name": "vllm"}},
            "gatewayLabels": {"type": "object", "default": {"app.kubernetes.io/name": "gateway"}},
            "allowedNamespaces": {"type": "array", "items": {"type": "string"}, "default": ["monitoring"]},
        },
    ),
    stack_rule(
        "k8s-metrics-not-public",
        "An internet-facing Ingress never routes a metrics path to a port Prometheus scrapes.",
        severity=HIGH,
        remediation="Route only the API paths, serve metrics on a separate port, or send /metrics to an ALB "
        "fixed-response action.",
        check=_metrics_not_public,
        config={"metricsPath": {"type": "string", "default": "/metrics"}},
    ),
]
