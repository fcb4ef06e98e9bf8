"""vLLM on the GPU pool: Deployment, Service, PodDisruptionBudget, a service account with the model store's
read-only role (Pod Identity), and the KEDA ScaledObject that sizes it from its queue."""

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import AfterValidator, Field, model_validator

from components import compile_cache, contracts
from components.cold_start import STARTUP_PROBE_PERIOD_S, ColdStartBudget
from components.config_base import StrictModel
from components.kube import Quantity, Resources, as_manifest, autoscaled, one_at_a_time_budget
from components.versions import VLLM_IMAGE

VLLM_NAME = "vllm"
DEFAULT_HF_MODEL = "Qwen/Qwen2.5-7B-Instruct"
# KEDA scales the target to this many replicas and stops autoscaling while the annotation is there (KEDA docs,
# concepts/scaling-deployments, "Pause autoscaling"); removing it resumes.
PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
SHM_PATH = "/dev/shm"
# vLLM keeps its torch.compile artifacts under VLLM_CACHE_ROOT/torch_compile_cache (vllm 0.33.0 envs.py,
# compilation/decorators.py; components/upstream/vllm-runtime.json). In a directory of the node (VllmArgs.
# node_cache_dir) they outlive the pod, so a repeat start on that node skips most of the compile; where the node
# has no such directory, an emptyDir (the shared cache in the model bucket still fills it).
COMPILE_CACHE_ENV = "VLLM_CACHE_ROOT"
COMPILE_CACHE_PATH = "/var/cache/vllm"
COMPILE_CACHE_EMPTY_DIR_LIMIT = "20Gi"
GIB = 2**30
# The vllm/vllm-openai image runs as root ("designed to be run under the root user", vLLM docs "Using Docker";
# docker/Dockerfile's `vllm-openai` target sets no USER, the non-root one is a separate opt-in build target), and
# writes its caches under /root/.cache: so no runAsNonRoot, but nothing beyond that either.
VLLM_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# Slack on top of preStop + vLLM's drain, for the process to exit after draining.
EXIT_MARGIN_S = 10
# Activation metric the gateway exports while it holds requests and no vLLM pod is ready.
GATEWAY_PENDING_METRIC = "gateway_pending_requests"
# dcgm-exporter's GPU busy percentage (components/gpu_metrics.py), mapped to the pod that holds the GPU.
GPU_UTILIZATION_METRIC = "DCGM_FI_DEV_GPU_UTIL"
# Quantization methods for `--quantization` that fit a single L4/A10G-class GPU; the tests hold them to the
# pinned vLLM's QUANTIZATION_METHODS (components/upstream/vllm.json). vLLM 0.33 has no bitsandbytes method: the
# engine would refuse it at start-up (get_quantization_config), after the node and image pull were paid for.
Quantization = Literal["awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "compressed-tensors"]


def _generation_config(value: str) -> str:
    if value in ("auto", "vllm") or value.startswith("/"):
        return value
    raise ValueError("generationConfig must be 'auto' (the model's file), 'vllm' (vLLM defaults) or an absolute path")


class VllmConfig(StrictModel):
    model_source: Literal["huggingface", "s3"] = "huggingface"
    model: str | None = Field(
        default=None,
        min_length=1,
        description="Hugging Face id (default: seed 000's model), or with modelSource s3 the prefix of a published "
        "version in the model bucket, models/<name>/<version>/; unset with s3 until the first version is published.",
    )
    served_model_name: str | None = Field(default=None, description="Name clients send; default: model.")
    max_model_len: int = Field(default=4096, ge=256, le=1_048_576)
    max_num_seqs: int = Field(default=8, ge=1, le=1024)
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=0.95)
    enable_prefix_caching: bool = True
    quantization: Quantization | None = None
    generation_config: Annotated[str, AfterValidator(_generation_config)] = "vllm"
    shutdown_timeout_s: int = Field(default=60, ge=0, le=3600, description="vLLM drains in-flight requests this long.")
    pre_stop_sleep_s: int = Field(default=10, ge=0, le=120, description="Lets endpoints drop the pod first.")
    min_replicas: int = Field(default=1, ge=0, le=100)
    max_replicas: int = Field(default=2, ge=1, le=100)
    gpus_per_pod: int = Field(default=1, ge=1, le=8)
    resources: Resources = Field(
        default_factory=lambda: Resources(cpu_request="4", memory_request="24Gi", cpu_limit="8", memory_limit="28Gi")
    )
    runai_streamer_concurrency: int = Field(default=16, ge=1, le=256)
    runai_streamer_memory_limit_gib: int = Field(
        default=4, ge=1, le=64,
        description="CPU buffer the streamer fills from S3: a few seconds of a 10-25 Gbit/s GPU node's network.",
    )
    shm_size: Quantity = "8Gi"
    shared_compile_cache: bool = Field(
        default=False,
        description="Sync vLLM's torch.compile cache from the model bucket before start and write it back once "
        "serving, so a pod on a new node loads compiled graphs instead of compiling (docs/cold-start.md).",
    )

    @model_validator(mode="before")
    @classmethod
    def hugging_face_default(cls, data: Any) -> Any:
        """From the Hub the model defaults to seed 000's; from the bucket there is no default, only what was
        published there."""
        if isinstance(data, dict) and data.get("model") is None:
            source = data.get("modelSource", data.get("model_source", "huggingface"))
            if source == "huggingface":
                return {**data, "model": DEFAULT_HF_MODEL}
        return data

    @property
    def published(self) -> bool:
        """Whether there is a model to serve. A stack serving from its own bucket has none on its first deploy:
        the bucket is created by that same `pulumi up`."""
        return self.model is not None

    @property
    def name_for_clients(self) -> str:
        return self.served_model_name or self.model or ""

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        if self.model_source == "s3" and self.model and self.model.startswith(("s3://", "/")):
            raise ValueError("with modelSource s3, model is a prefix inside the model bucket, like models/qwen2.5-7b/")
        if not self.name_for_clients:
            raise ValueError(
                "modelSource s3 without a published model: set servedModelName, the name clients will send (model "
                "is set when a version is published to the bucket)"
            )
        return self


class ScaleRate(StrictModel):
    """One HPA scaling direction: at most `pods` per `period_s`, after `stabilization_window_s`."""

    stabilization_window_s: int = Field(ge=0, le=3600)
    pods: int = Field(ge=1, le=100)
    period_s: int = Field(ge=1, le=1800)


class ScalingConfig(StrictModel):
    activation: Literal["gateway", "none"] = Field(
        default="gateway",
        description="gateway: the gateway's held-request gauge wakes vLLM from zero; none: vLLM metrics only.",
    )
    target_per_pod: int = Field(default=6, ge=1, description="Scaling formula value one pod should carry.")
    waiting_weight: int = Field(default=10, ge=1, description="A queued request counts this many running ones.")
    polling_interval_s: int = Field(default=15, ge=5, le=300)
    cooldown_period_s: int = Field(default=300, ge=30, le=3600, description="Idle time before scaling to zero.")
    fallback_replicas: int | None = Field(default=None, ge=1, description="Replicas while Prometheus is unreachable.")
    gpu_utilization_percent: int | None = Field(
        default=None, ge=10, le=100,
        description="Also size on GPU busy time (dcgm-exporter): replicas >= sum of pods' GPU utilisation / this. "
        "The larger of the queue and GPU answers wins. Unset: queue only.",
    )
    scale_up: ScaleRate = Field(default_factory=lambda: ScaleRate(stabilization_window_s=30, pods=2, period_s=60))
    scale_down: ScaleRate = Field(
        default_factory=lambda: ScaleRate(stabilization_window_s=300, pods=1, period_s=120)
    )




def model_uri(config: VllmConfig, bucket: str) -> str:
    """What vLLM loads. Before a first version is published that is the bucket itself, which no pod ever reads:
    the Deployment then has no replicas and its autoscaler is paused."""
    if config.model_source == "s3":
        return f"s3://{bucket}/{config.model.strip('/')}/" if config.model else f"s3://{bucket}/"
    return config.model or DEFAULT_HF_MODEL


def vllm_arguments(config: VllmConfig, model: str) -> list[str]:
    """`vllm serve` arguments (the image's entrypoint): exact, current flag names of the pinned vLLM, which the
    tests check against its recorded parser (components/upstream/vllm.json)."""
    args = [
        model,
        "--host", "0.0.0.0",
        "--port", str(contracts.VLLM_PORT),
        "--served-model-name", config.name_for_clients,
        "--max-model-len", str(config.max_model_len),
        "--max-num-seqs", str(config.max_num_seqs),
        "--gpu-memory-utilization", str(config.gpu_memory_utilization),
        "--tensor-parallel-size", str(config.gpus_per_pod),
        "--enable-prefix-caching" if config.enable_prefix_caching else "--disable-prefix-caching",
        "--generation-config", config.generation_config,
        "--shutdown-timeout", str(config.shutdown_timeout_s),
    ]
    if config.quantization:
        args += ["--quantization", config.quantization]
    if config.model_source == "s3":
        args += [
            "--load-format", "runai_streamer",
            "--model-loader-extra-config", json.dumps({
                "concurrency": config.runai_streamer_concurrency,
                "memory_limit": config.runai_streamer_memory_limit_gib * GIB,
            }),
        ]
    return args


def grace_period_s(config: VllmConfig) -> int:
    return config.pre_stop_sleep_s + config.shutdown_timeout_s + EXIT_MARGIN_S


def _selector(namespace: str) -> str:
    # The pod filter keeps the gateway (which may re-export vllm: gauges) out of the sums.
    return f'namespace="{namespace}",pod=~"{VLLM_NAME}-.+"'


def scaling_triggers(scaling: ScalingConfig, namespace: str, prometheus_url: str) -> list[dict[str, Any]]:
    def prometheus(name: str, query: str) -> dict[str, Any]:
        return {
            "type": "prometheus",
            "name": name,
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus_url,
                "query": query,
                "threshold": str(scaling.target_per_pod),
                "activationThreshold": "0",
                "ignoreNullValues": "true",
            },
        }

    triggers = [
        prometheus("running", f"sum(vllm:num_requests_running{{{_selector(namespace)}}})"),
        prometheus("waiting", f"sum(vllm:num_requests_waiting{{{_selector(namespace)}}})"),
    ]
    if scaling.activation == "gateway":
        triggers.append(
            prometheus("pending", f'sum({GATEWAY_PENDING_METRIC}{{namespace="{namespace}"}})')
        )
    if scaling.gpu_utilization_percent:
        # Per pod first: a pod with several GPUs counts its average once. Labels are dcgm-exporter's pod mapping.
        triggers.append(
            prometheus("gpu", f"sum(avg by (pod) ({GPU_UTILIZATION_METRIC}{{{_selector(namespace)}}}))")
        )
    return triggers


def scaling_formula(scaling: ScalingConfig) -> str:
    """Queued requests weigh heavily: a queue means every slot is taken. Held requests count as queued.
    With a GPU target, the GPU term is scaled to the same units (target_per_pod per needed pod) and the larger
    term wins, so either signal can scale out and scale-in needs both to agree."""
    formula = f"running + waiting * {scaling.waiting_weight}"
    if scaling.activation == "gateway":
        formula += f" + pending * {scaling.waiting_weight}"
    if scaling.gpu_utilization_percent:
        queue, gpu = f"({formula})", f"(gpu * {scaling.target_per_pod} / {scaling.gpu_utilization_percent})"
        formula = f"{queue} > {gpu} ? {queue} : {gpu}"
    return formula


def _hpa_rule(rate: ScaleRate) -> dict[str, Any]:
    return {
        "stabilizationWindowSeconds": rate.stabilization_window_s,
        "policies": [{"type": "Pods", "value": rate.pods, "periodSeconds": rate.period_s}],
    }


@dataclass(frozen=True)
class VllmArgs:
    config: VllmConfig
    scaling: ScalingConfig
    namespace: pulumi.Input[str]
    namespace_name: str
    region: str
    cluster_name: pulumi.Input[str]
    model_bucket: pulumi.Input[str]
    reader_role_arn: pulumi.Input[str]
    prometheus_url: str
    kubernetes_provider: k8s.Provider
    # The startup probe window and Pulumi's rollout wait derive from it.
    cold_start: ColdStartBudget
    crd_providers: list[pulumi.Resource] = field(default_factory=list)
    # The GPU NodePool (and device plugin): pods start only once Karpenter can give them a GPU node.
    capacity: list[pulumi.Resource] = field(default_factory=list)
    image: pulumi.Input[str] = VLLM_IMAGE  # or its copy in the stack's ECR pull-through cache
    # The GPU pool's instance families: part of the shared compile cache's key.
    gpu_families: list[str] = field(default_factory=list)
    # A directory of the GPU node that outlives pods (GpuPoolConfig.node_cache_dir), or None.
    node_cache_dir: str | None = None


def compile_cache_volume(node_cache_dir: str | None) -> dict[str, Any]:
    if node_cache_dir is None:
        return {"name": "compile-cache", "emptyDir": {"sizeLimit": COMPILE_CACHE_EMPTY_DIR_LIMIT}}
    return {"name": "compile-cache", "hostPath": {"path": f"{node_cache_dir}/vllm-cache", "type": "DirectoryOrCreate"}}


class VllmServer(pulumi.ComponentResource):
    url: str
    deployment_name: pulumi.Output[str]

    def __init__(self, name: str, args: VllmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:VllmServer", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider)
        config = args.config
        labels = {contracts.APP_NAME_LABEL: contracts.VLLM_APP}
        # Plain dicts are typed Any: the SDK's TypedDicts cannot describe Output-valued fields built up in parts.
        metadata: Any = {"name": VLLM_NAME, "namespace": args.namespace, "labels": labels}

        account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=metadata, opts=on_cluster)
        aws.eks.PodIdentityAssociation(
            f"{name}-model-reader",
            cluster_name=args.cluster_name,
            namespace=args.namespace_name,
            service_account=VLLM_NAME,
            role_arn=args.reader_role_arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
        )

        cache_mounts, init_containers = self._compile_cache(args)
        http_probe = {"httpGet": {"path": "/health", "port": contracts.METRICS_PORT_NAME}}
        container: Any = {
            "name": VLLM_NAME,
            "image": args.image,
            "args": pulumi.Output.from_input(args.model_bucket).apply(
                lambda bucket: vllm_arguments(config, model_uri(config, bucket))
            ),
            "ports": [{"name": contracts.METRICS_PORT_NAME, "containerPort": contracts.VLLM_PORT}],
            "env": [{"name": "AWS_REGION", "value": args.region},
                    {"name": COMPILE_CACHE_ENV, "value": COMPILE_CACHE_PATH}],
            "resources": config.resources.as_kubernetes({"nvidia.com/gpu": str(config.gpus_per_pod)}),
            # The port opens only once the model is loaded: allow the budgeted load (probeTolerance times over)
            # before liveness applies.
            "startupProbe": {**http_probe, "periodSeconds": STARTUP_PROBE_PERIOD_S,
                             "failureThreshold": args.cold_start.startup_failure_threshold},
            "readinessProbe": {**http_probe, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3},
            "livenessProbe": {**http_probe, "periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 4},
            # Endpoints drop the pod during the sleep; then SIGTERM makes vLLM drain for --shutdown-timeout.
            "lifecycle": {"preStop": {"sleep": {"seconds": config.pre_stop_sleep_s}}},
            "volumeMounts": [{"name": "dshm", "mountPath": SHM_PATH}, *cache_mounts],
            "securityContext": VLLM_CONTAINER_SECURITY,
        }
        # A first start waits for a node and the image too: Pulumi's default 10-minute wait is not the budget.
        rollout_timeout = f"{args.cold_start.rollout_timeout_s}s"
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec=as_manifest({
                # Nothing to serve yet (first deploy of a stack serving from its own, still empty, bucket): no pods.
                "replicas": config.min_replicas if config.published else 0,
                "selector": {"matchLabels": labels},
                # A new pod must be ready before an old one stops: no capacity dip during a model rollout.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": VLLM_NAME,
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "nodeSelector": {contracts.POOL_LABEL_KEY: contracts.GPU_POOL},
                        "tolerations": [{**contracts.GPU_TAINT, "operator": "Equal"}],
                        "terminationGracePeriodSeconds": grace_period_s(config),
                        "initContainers": init_containers,
                        "containers": [container],
                        "volumes": [
                            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": config.shm_size}},
                            compile_cache_volume(args.node_cache_dir),
                            # The AWS CLI's scratch space (read-only root filesystem).
                            *([{"name": "sync-tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
                              if config.shared_compile_cache else []),
                        ],
                    },
                },
            }),
            opts=autoscaled(
                pulumi.ResourceOptions.merge(
                    on_cluster,
                    pulumi.ResourceOptions(
                        depends_on=[account, *args.capacity],
                        custom_timeouts=pulumi.CustomTimeouts(create=rollout_timeout, update=rollout_timeout),
                    ),
                )
            ),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata,
            spec=as_manifest({
                "type": "ClusterIP",
                "selector": labels,
                "ports": [
                    {"name": contracts.METRICS_PORT_NAME, "port": contracts.VLLM_PORT,
                     "targetPort": contracts.METRICS_PORT_NAME}
                ],
            }),
            opts=on_cluster,
        )
        one_at_a_time_budget(f"{name}-pdb", metadata, labels, on_cluster)
        self._ingress_policy(name, metadata, labels, on_cluster)
        self._scaled_object(name, args, on_cluster)

        self.url = f"http://{VLLM_NAME}.{args.namespace_name}.svc.cluster.local:{contracts.VLLM_PORT}"
        self.deployment_name = deployment.metadata.name
        self.register_outputs({"url": self.url, "deployment_name": self.deployment_name, "service": service.id})

    @staticmethod
    def _compile_cache(args: VllmArgs) -> tuple[list[dict[str, Any]], Any]:
        """vLLM's mount of the node's compile cache and, with a shared cache, the containers that sync it. A shared
        cache gets its own directory on the node (subPath: its key), so what is written back is this key's only."""
        config = args.config
        if not config.shared_compile_cache:
            return [{"name": "compile-cache", "mountPath": COMPILE_CACHE_PATH}], []
        # Until a version is published no pod runs; the key still names a model (the name clients send).
        model = config.model or config.name_for_clients
        key = compile_cache.cache_key(model, args.gpu_families, config.gpus_per_pod, vllm_arguments(config, model))
        mounts = [{"name": "compile-cache", "mountPath": COMPILE_CACHE_PATH, "subPath": key}]
        sync_mounts = [*mounts, {"name": "sync-tmp", "mountPath": "/tmp"}]
        containers = pulumi.Output.from_input(args.model_bucket).apply(
            lambda bucket: compile_cache.sync_containers(
                compile_cache.cache_uri(bucket, key), COMPILE_CACHE_PATH, args.region,
                args.cold_start.init_timeout_s, sync_mounts,
            )
        )
        return mounts, containers

    @staticmethod
    def _ingress_policy(name: str, metadata: Any, labels: dict[str, str], on_cluster: pulumi.ResourceOptions) -> None:
        """Only the gateway (keys, limits) and Prometheus (scrapes) reach vLLM's port. Enforced by the VPC CNI's
        network policy agent (cluster.py), which always allows the node's own IP, so kubelet probes still pass
        (aws/aws-network-policy-agent#65)."""
        port = [{"protocol": "TCP", "port": contracts.VLLM_PORT}]
        k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata=metadata,
            spec=as_manifest({
                "podSelector": {"matchLabels": labels},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {contracts.APP_NAME_LABEL: contracts.GATEWAY_APP}}}],
                     "ports": port},
                    {"from": [{
                        "namespaceSelector": {
                            "matchLabels": {contracts.NAMESPACE_NAME_LABEL: contracts.MONITORING_NAMESPACE}
                        },
                        "podSelector": {"matchLabels": contracts.PROMETHEUS_POD_LABELS},
                    }], "ports": port},
                ],
            }),
            opts=on_cluster,
        )

    def _scaled_object(self, name: str, args: VllmArgs, on_cluster: pulumi.ResourceOptions) -> None:
        scaling, config = args.scaling, args.config
        spec: dict[str, Any] = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": VLLM_NAME},
            "minReplicaCount": config.min_replicas,
            "maxReplicaCount": config.max_replicas,
            "pollingInterval": scaling.polling_interval_s,
            "cooldownPeriod": scaling.cooldown_period_s,
            "triggers": scaling_triggers(scaling, args.namespace_name, args.prometheus_url),
            "advanced": {
                "scalingModifiers": {
                    "formula": scaling_formula(scaling),
                    "target": str(scaling.target_per_pod),
                    "activationTarget": "0",
                    "metricType": "AverageValue",
                },
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleUp": _hpa_rule(scaling.scale_up), "scaleDown": _hpa_rule(scaling.scale_down)}
                },
            },
        }
        if scaling.fallback_replicas:
            spec["fallback"] = {"failureThreshold": 3, "replicas": scaling.fallback_replicas}
        k8s.apiextensions.CustomResource(
            f"{name}-scaledobject",
            api_version="keda.sh/v1alpha1",
            kind="ScaledObject",
            metadata={
                "name": VLLM_NAME,
                "namespace": args.namespace,
                "labels": {contracts.APP_NAME_LABEL: contracts.VLLM_APP},
                # Without a model, neither minReplicaCount nor held requests may start a pod that cannot load one.
                "annotations": {} if config.published else {PAUSED_REPLICAS_ANNOTATION: "0"},
            },
            spec=spec,
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=args.crd_providers)),
        )
