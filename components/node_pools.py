"""Karpenter's node pools as data: an EC2NodeClass and a NodePool per pool (GPU for vLLM, CPU for the gateway
and apps), built by typed builder functions from the validated config and declared as custom resources."""

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field, model_validator

from components import contracts
from components.config_base import InstanceType, StrictModel
from components.versions import CPU_AMI_ALIAS_DEV, GPU_AMI_ALIAS_DEV

KARPENTER_API = "karpenter.sh/v1"
NODE_CLASS_API = "karpenter.k8s.aws/v1"
NODE_CLASS_GROUP = NODE_CLASS_API.split("/")[0]
DISCOVERY_TAG = "karpenter.sh/discovery"
NODEADM_API = "node.eks.aws/v1alpha1"
NODEADM_CONTENT_TYPE = "application/node.eks.aws"
# Our Bottlerocket bootstrap command (named apart from Karpenter's 000-mount-instance-storage) and the directories
# it puts on the instance store: not /var/lib/containerd, where the snapshot's images are.
INSTANCE_STORE_COMMAND = "010-instance-store-kubelet"
INSTANCE_STORE_DIRS = ("/var/lib/kubelet", "/var/log/pods")
# Tag keys Karpenter sets itself; the EC2NodeClass CRD refuses them in spec.tags.
KARPENTER_RESERVED_TAGS = (
    "eks:eks-cluster-name", "kubernetes.io/cluster", "karpenter.sh/nodepool", "karpenter.sh/nodeclaim",
    "karpenter.k8s.aws/ec2nodeclass",
)
# Bottlerocket keeps its OS on a small volume and images on the second one; AL2023 has one root volume.
BOTTLEROCKET_OS_VOLUME = {"deviceName": "/dev/xvda", "ebs": {"volumeSize": "4Gi", "volumeType": "gp3",
                                                              "encrypted": True, "deleteOnTermination": True}}

CapacityType = Literal["spot", "on-demand"]
ConsolidationPolicy = Literal["WhenEmpty", "WhenEmptyOrUnderutilized"]
# EC2 families with NVIDIA GPUs that the EKS AL2023/Bottlerocket NVIDIA AMIs support.
GPU_INSTANCE_FAMILIES = (
    "g4dn", "g5", "g6", "g6e", "g6f", "gr6", "gr6f", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200",
)
AL2023_INSTANCE_STORE_MOUNT = "/mnt/k8s-disks/0"
# EC2 snapshot ids: snap- and 8 (older) or 17 hex digits.
SNAPSHOT_ID_PATTERN = r"^snap-([0-9a-f]{8}|[0-9a-f]{17})$"
# EBS Provisioned Rate for Volume Initialization: 100-300 MiB/s (EC2 API EbsBlockDevice.VolumeInitializationRate;
# Karpenter v1.14.1 EC2NodeClass blockDeviceMappings[].ebs.volumeInitializationRate, same bounds).
MAX_VOLUME_INITIALIZATION_MIBPS = 300
# AL2023 releases are awslabs/amazon-eks-ami tags vYYYYMMDD; Bottlerocket's are semantic versions.
AMI_ALIAS_PATTERN = r"^(al2023@(latest|v20\d{6})|bottlerocket@(latest|v\d+\.\d+\.\d+))$"
DURATION_PATTERN = r"^([0-9]+(s|m|h))+$"
# A GPU node that is consolidated sooner can be killed while it still pulls an 8-10 GB image
# (karpenter-provider-aws#7414).
MIN_GPU_CONSOLIDATE_AFTER_S = 15 * 60


def duration_seconds(duration: str) -> int:
    """Seconds in a Karpenter/Go duration like `1h30m`."""
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(amount) * units[unit] for amount, unit in re.findall(r"([0-9]+)([smh])", duration))


class PoolConfig(StrictModel):
    """What every Karpenter pool has: where its capacity comes from and how much of it there may be."""

    instance_families: list[str] = Field(default_factory=list)
    instance_types: list[InstanceType] = Field(
        default_factory=list, description="Exact types; when set they replace instanceFamilies."
    )
    capacity_types: list[CapacityType] = Field(default=["spot"], min_length=1)
    cpu_limit: int = Field(default=64, ge=1, description="vCPUs the pool may hold in total.")
    memory_limit_gib: int = Field(default=256, ge=1)
    consolidation_policy: ConsolidationPolicy = "WhenEmptyOrUnderutilized"
    consolidate_after: str = Field(default="1m", pattern=DURATION_PATTERN)
    expire_after: str = Field(default="720h", pattern=DURATION_PATTERN)
    root_volume_gib: int = Field(default=50, ge=20, le=16384)
    root_volume_iops: int = Field(default=3000, ge=3000, le=16000)
    root_volume_throughput_mibps: int = Field(default=125, ge=125, le=1000)
    ami_alias: str = Field(default=CPU_AMI_ALIAS_DEV, pattern=AMI_ALIAS_PATTERN)
    require_pinned_ami: bool = False
    fast_image_pull: bool = Field(
        default=False, description="SOCI parallel pull and unpack on AL2023 nodes (nodeadm's FastImagePull gate)."
    )
    instance_store_raid0: bool = Field(
        default=False, description="Put containerd, kubelet and SOCI on the instance's NVMe disks (RAID0)."
    )

    @model_validator(mode="after")
    def capacity_chosen(self) -> Self:
        if not self.instance_families and not self.instance_types:
            raise ValueError("set instanceFamilies (like g6) or instanceTypes (like g6.xlarge)")
        if len(set(self.capacity_types)) != len(self.capacity_types):
            raise ValueError(f"capacityTypes {self.capacity_types} lists a type twice; allowed: spot, on-demand")
        if self.require_pinned_ami and self.ami_alias.endswith("@latest"):
            raise ValueError(
                f"amiAlias {self.ami_alias} follows the latest release but requirePinnedAmi is set (prod pins its "
                "AMIs): name a release, like al2023@v20260714 (awslabs/amazon-eks-ami) or bottlerocket@v1.68.1"
            )
        return self

    @property
    def ami_family(self) -> str:
        return self.ami_alias.split("@")[0]

    @property
    def parallel_image_pull(self) -> bool:
        """Whether nodes pull with SOCI parallel pull: the gate is nodeadm's, so AL2023 only."""
        return self.fast_image_pull and self.ami_family == "al2023"

    @property
    def families(self) -> list[str]:
        """Families the pool draws from: those of the configured types, else the configured families."""
        return sorted({t.split(".")[0] for t in self.instance_types}) if self.instance_types else self.instance_families


class GpuPoolConfig(PoolConfig):
    instance_families: list[str] = Field(default_factory=lambda: ["g6", "g5"])
    gpu_limit: int = Field(default=4, ge=1, description="nvidia.com/gpu the pool may hold in total.")
    consolidation_policy: ConsolidationPolicy = "WhenEmpty"
    consolidate_after: str = Field(default="15m", pattern=DURATION_PATTERN)
    root_volume_gib: int = Field(default=200, ge=100, le=16384)
    root_volume_iops: int = Field(default=6000, ge=3000, le=16000)
    root_volume_throughput_mibps: int = Field(default=750, ge=125, le=1000)
    ami_alias: str = Field(default=GPU_AMI_ALIAS_DEV, pattern=AMI_ALIAS_PATTERN)
    # An 8-10 GB vLLM image: parallel pull and unpack onto local NVMe is most of a new node's cold start.
    fast_image_pull: bool = True
    instance_store_raid0: bool = True
    image_snapshot_id: str | None = Field(
        default=None, pattern=SNAPSHOT_ID_PATTERN,
        description="EBS snapshot of a Bottlerocket data volume holding the GPU pods' images (`llm-platform images "
        "snapshot` builds it): new nodes start with the images present instead of pulling them.",
    )
    volume_initialization_rate_mibps: int = Field(
        default=MAX_VOLUME_INITIALIZATION_MIBPS, ge=100, le=MAX_VOLUME_INITIALIZATION_MIBPS,
        description="EBS Provisioned Rate for Volume Initialization of the snapshot's volume (100-300 MiB/s).",
    )

    @model_validator(mode="after")
    def gpu_capacity(self) -> Self:
        for family in self.families:
            if family not in GPU_INSTANCE_FAMILIES:
                raise ValueError(
                    f"instance family {family!r} has no NVIDIA GPU; allowed: {', '.join(GPU_INSTANCE_FAMILIES)}"
                )
        if duration_seconds(self.consolidate_after) < MIN_GPU_CONSOLIDATE_AFTER_S:
            raise ValueError(
                f"consolidateAfter {self.consolidate_after} is under 15m: Karpenter could remove a GPU node while "
                "it still pulls the vLLM image"
            )
        if self.image_snapshot_id and self.ami_family != "bottlerocket":
            raise ValueError(
                f"imageSnapshotId {self.image_snapshot_id} needs amiAlias bottlerocket@<version> (it is "
                f"{self.ami_alias}): only Bottlerocket keeps container images on a data volume (/dev/xvdb) a "
                "snapshot can fill"
            )
        return self

    @property
    def node_cache_dir(self) -> str | None:
        """A node directory pods may keep caches in across restarts: the instance-store RAID0 that the AL2023 AMI
        mounts at /mnt/k8s-disks/0 (amazon-eks-ami templates/al2023/runtime/bin/setup-local-disks at v20260714).
        None on Bottlerocket: SELinux gives each pod its own categories, so a hostPath one pod wrote the next cannot
        use (bottlerocket-os/bottlerocket#2417, components/upstream/bottlerocket.json hostPath)."""
        return AL2023_INSTANCE_STORE_MOUNT if self.ami_family == "al2023" else None

    @property
    def needs_device_plugin(self) -> bool:
        """Bottlerocket's NVIDIA variant ships its own device plugin; AL2023's NVIDIA AMI does not."""
        return self.ami_family == "al2023"


class CpuPoolConfig(PoolConfig):
    instance_families: list[str] = Field(default_factory=lambda: ["m7i", "m6i", "c7i", "c6i"])



@dataclass(frozen=True)
class NodeClassSpec:
    """One EC2NodeClass: which AMI, which role, and the volume images are pulled onto."""

    name: str
    ami_alias: str
    volume_gib: int
    volume_iops: int
    volume_throughput_mibps: int
    tags: dict[str, str] = field(default_factory=dict)
    fast_image_pull: bool = False
    instance_store_raid0: bool = False
    image_snapshot_id: str | None = None
    volume_initialization_rate_mibps: int = MAX_VOLUME_INITIALIZATION_MIBPS

    @property
    def ami_family(self) -> str:
        return self.ami_alias.split("@")[0]

    @property
    def binds_instance_store_itself(self) -> bool:
        """Karpenter's RAID0 policy binds containerd's directory onto the instance store too, which would hide the
        images the data-volume snapshot holds: such a node class binds only kubelet and pod logs, itself."""
        return self.instance_store_raid0 and self.image_snapshot_id is not None


def node_class_spec(name: str, pool: PoolConfig, tags: dict[str, str]) -> NodeClassSpec:
    """The node class of pool `name`. Its instances, volumes and launch templates carry the stack's cost tags
    (Karpenter launches them itself, so the AWS provider's default tags never reach them) and the pool name."""
    gpu = pool if isinstance(pool, GpuPoolConfig) else None
    return NodeClassSpec(
        name=name,
        ami_alias=pool.ami_alias,
        volume_gib=pool.root_volume_gib,
        volume_iops=pool.root_volume_iops,
        volume_throughput_mibps=pool.root_volume_throughput_mibps,
        tags={**tags, contracts.POOL_LABEL_KEY: name},
        fast_image_pull=pool.parallel_image_pull,
        instance_store_raid0=pool.instance_store_raid0,
        image_snapshot_id=gpu.image_snapshot_id if gpu else None,
        volume_initialization_rate_mibps=(
            gpu.volume_initialization_rate_mibps if gpu else MAX_VOLUME_INITIALIZATION_MIBPS
        ),
    )


def nodeadm_user_data() -> str:
    """AL2023 user data: a nodeadm NodeConfig (awslabs/amazon-eks-ami nodeadm/api/v1alpha1, recorded in
    components/upstream/nodeadm.json) that Karpenter merges with its own. FastImagePull turns on the SOCI
    snapshotter in parallel pull/unpack mode (on nodes of 4+ vCPUs and 7+ GiB); kubelet pulls images in parallel
    (nodeadm's default, stated so a later default cannot serialize them)."""
    node_config = {
        "apiVersion": NODEADM_API,
        "kind": "NodeConfig",
        "spec": {
            "featureGates": {"FastImagePull": True},
            "kubelet": {"config": {"serializeImagePulls": False}},
        },
    }
    return (
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="BOUNDARY"\n\n'
        f"--BOUNDARY\nContent-Type: {NODEADM_CONTENT_TYPE}\n\n---\n{yaml.safe_dump(node_config, sort_keys=False)}"
        "\n--BOUNDARY--\n"
    )


def bottlerocket_user_data() -> str:
    """Bottlerocket settings (TOML) Karpenter merges with its own: put kubelet's directory (emptyDirs) and pod logs
    on the instance-store RAID0, leaving containerd's on the data volume with the snapshot's images. `apiclient
    ephemeral-storage` and the bootstrap-commands model as recorded in components/upstream/bottlerocket.json."""
    commands = [
        ["apiclient", "ephemeral-storage", "init"],
        ["apiclient", "ephemeral-storage", "bind", "--dirs", *INSTANCE_STORE_DIRS],
    ]
    return (
        f"[settings.bootstrap-commands.{INSTANCE_STORE_COMMAND}]\n"
        f"commands = {json.dumps(commands)}\n"
        'mode = "always"\n'
        "essential = true\n"
    )


def block_device_mappings(spec: NodeClassSpec) -> list[dict[str, Any]]:
    data_volume: dict[str, Any] = {
        "volumeSize": f"{spec.volume_gib}Gi",
        "volumeType": "gp3",
        "iops": spec.volume_iops,
        "throughput": spec.volume_throughput_mibps,
        "encrypted": True,
        "deleteOnTermination": True,
    }
    if spec.image_snapshot_id:
        data_volume |= {
            "snapshotID": spec.image_snapshot_id,
            "volumeInitializationRate": spec.volume_initialization_rate_mibps,
        }
    if spec.ami_family == "bottlerocket":
        return [BOTTLEROCKET_OS_VOLUME, {"deviceName": "/dev/xvdb", "ebs": data_volume}]
    return [{"deviceName": "/dev/xvda", "rootVolume": True, "ebs": data_volume}]


def ec2_node_class(
    spec: NodeClassSpec, cluster_name: pulumi.Input[str], node_role: pulumi.Input[str]
) -> dict[str, Any]:
    """The EC2NodeClass manifest; subnets and security groups are found by the cluster's discovery tag."""
    discovery = [{"tags": {DISCOVERY_TAG: cluster_name}}]
    return {
        "apiVersion": NODE_CLASS_API,
        "kind": "EC2NodeClass",
        "metadata": {"name": spec.name},
        "spec": {
            "role": node_role,
            "amiSelectorTerms": [{"alias": spec.ami_alias}],
            "subnetSelectorTerms": discovery,
            "securityGroupSelectorTerms": discovery,
            # IMDSv2 only, and a hop limit that keeps pods off the node's credentials (they use Pod Identity).
            "metadataOptions": {
                "httpEndpoint": "enabled",
                "httpProtocolIPv6": "disabled",
                "httpPutResponseHopLimit": 1,
                "httpTokens": "required",
            },
            "blockDeviceMappings": block_device_mappings(spec),
            "tags": spec.tags,
            **node_class_user_data(spec),
        },
    }


def node_class_user_data(spec: NodeClassSpec) -> dict[str, Any]:
    """What a node class adds to Karpenter's user data, and whether Karpenter's own RAID0 policy applies."""
    if spec.binds_instance_store_itself:
        return {"userData": bottlerocket_user_data()}
    return {
        **({"userData": nodeadm_user_data()} if spec.fast_image_pull else {}),
        **({"instanceStorePolicy": "RAID0"} if spec.instance_store_raid0 else {}),
    }


def pool_requirements(pool: PoolConfig, gpu: bool) -> list[dict[str, Any]]:
    """Where capacity may come from. With both capacity types allowed Karpenter launches Spot when it can and
    falls back to on-demand when Spot has no capacity."""
    if pool.instance_types:
        shape = {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": pool.instance_types}
    else:
        shape = {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": pool.instance_families}
    requirements = [
        shape,
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(pool.capacity_types)},
        {"key": "kubernetes.io/arch", "operator": "In", "values": [contracts.NODE_ARCHITECTURE]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    if gpu:
        requirements.append(
            {"key": "karpenter.k8s.aws/instance-gpu-manufacturer", "operator": "In", "values": ["nvidia"]}
        )
    return requirements


def node_pool(
    name: str, pool: PoolConfig, node_class: str, limits: dict[str, str], taints: list[dict[str, str]]
) -> dict[str, Any]:
    """The NodePool manifest: nodes labelled with their pool, tainted as given, bounded by `limits`."""
    template_spec: dict[str, Any] = {
        "nodeClassRef": {"group": NODE_CLASS_GROUP, "kind": "EC2NodeClass", "name": node_class},
        "requirements": pool_requirements(pool, gpu=bool(taints)),
        "expireAfter": pool.expire_after,
    }
    if taints:
        template_spec["taints"] = taints
    return {
        "apiVersion": KARPENTER_API,
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {"metadata": {"labels": {contracts.POOL_LABEL_KEY: name}}, "spec": template_spec},
            "limits": limits,
            "disruption": {
                "consolidationPolicy": pool.consolidation_policy,
                "consolidateAfter": pool.consolidate_after,
                # Replace one node at a time, so capacity never drops by more than a node during a rollout.
                "budgets": [{"nodes": "1"}],
            },
        },
    }


def gpu_node_pool(pool: GpuPoolConfig) -> dict[str, Any]:
    return node_pool(
        contracts.GPU_POOL,
        pool,
        contracts.GPU_POOL,
        {"cpu": str(pool.cpu_limit), "memory": f"{pool.memory_limit_gib}Gi", "nvidia.com/gpu": str(pool.gpu_limit)},
        [contracts.GPU_TAINT],
    )


def cpu_node_pool(pool: CpuPoolConfig) -> dict[str, Any]:
    return node_pool(
        contracts.CPU_POOL,
        pool,
        contracts.CPU_POOL,
        {"cpu": str(pool.cpu_limit), "memory": f"{pool.memory_limit_gib}Gi"},
        [],
    )


@dataclass(frozen=True)
class NodePoolsArgs:
    gpu_pool: GpuPoolConfig
    cpu_pool: CpuPoolConfig
    cluster_name: pulumi.Input[str]
    node_role_name: pulumi.Input[str]
    kubernetes_provider: k8s.Provider
    # The stack's cost-allocation tags, put on every instance Karpenter launches.
    tags: dict[str, str] = field(default_factory=dict)
    # The Karpenter CRD release and the controller: the objects need the CRDs and a controller to act on them.
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class NodePools(pulumi.ComponentResource):
    # Workloads depend on the pool they schedule on, so they start after it and go before it on destroy.
    gpu_pool: k8s.apiextensions.CustomResource
    cpu_pool: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: NodePoolsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:NodePools", name, None, opts)
        on_cluster = pulumi.ResourceOptions(
            parent=self, provider=args.kubernetes_provider, depends_on=args.depends_on
        )

        def declare(manifest: dict[str, Any], opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
            return k8s.apiextensions.CustomResource(
                f"{name}-{manifest['metadata']['name']}-{manifest['kind'].lower()}",
                api_version=manifest["apiVersion"],
                kind=manifest["kind"],
                metadata=manifest["metadata"],
                spec=manifest["spec"],
                opts=opts,
            )

        node_classes = [
            declare(ec2_node_class(spec, args.cluster_name, args.node_role_name), on_cluster)
            for spec in (
                node_class_spec(contracts.GPU_POOL, args.gpu_pool, args.tags),
                node_class_spec(contracts.CPU_POOL, args.cpu_pool, args.tags),
            )
        ]
        with_classes = pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=node_classes))
        self.gpu_pool = declare(gpu_node_pool(args.gpu_pool), with_classes)
        self.cpu_pool = declare(cpu_node_pool(args.cpu_pool), with_classes)
        self.register_outputs({})
