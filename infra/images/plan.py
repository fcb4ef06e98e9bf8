"""What `images snapshot` builds, from the stack's configuration: the Bottlerocket release and the public SSM
parameter of its AMI, the builder instance and its data volume, the images, and the snapshot's tags.

Upstream facts:
- Karpenter v1.14.1 pkg/providers/amifamily/bottlerocket.go (DescribeImageQuery) resolves `bottlerocket@v<X>` from
  /aws/service/bottlerocket/aws-k8s-<kubernetes>[-nvidia]/x86_64/<X without the v>/image_id; GPU types get -nvidia.
- The volume is written by the builder's containerd and read by the GPU node's. Since Bottlerocket v1.69.0 ("Use
  containerd 2.3 in all variants", #4989) the plain and -nvidia variants of a release share it, so the builder may
  boot the plain variant on a small CPU type (aws-samples/bottlerocket-images-cache snapshot.sh does). Before, the
  aws-k8s-1.35 variants could ship different containerd minor versions (variants/*/Cargo.toml), so the builder boots
  the nodes' own -nvidia AMI (components/upstream/bottlerocket.json, containerdNote), which needs an NVIDIA GPU
  instance: on a CPU type it never reaches SSM (bottlerocket-os/bottlerocket#4435).
- Bottlerocket keeps container images on its second volume, /dev/xvdb; an EC2NodeClass puts a snapshot there
  with `snapshotID` (awslabs/ai-on-eks website/docs/bestpractices/preload-container-images.md).
"""

from dataclasses import dataclass

from infra.models.errors import Refused
from infra.stackfile import KeyPath
from stacks.config import PlatformConfig
from stacks.gpu_images import BOTTLEROCKET_TAG, IMAGES_TAG, STACK_TAG, ImageRef, gpu_node_images, images_sha256

AMI_ALIAS_KEY = "addons.karpenter.gpuPool.amiAlias"
SNAPSHOT_KEY: KeyPath = ("addons", "karpenter", "gpuPool", "imageSnapshotId")
BOTTLEROCKET = "bottlerocket"
AMI_PARAMETER = "/aws/service/bottlerocket/{variant}/x86_64/{version}/image_id"
DATA_DEVICE = "/dev/xvdb"
SAME_CONTAINERD_SINCE = (1, 69, 0)
# The plain variant's builder: a small current-generation x86 type (2 vCPUs, 8 GiB, up to 12.5 Gbps).
PLAIN_BUILDER_TYPE = "m7i.large"
# The -nvidia variant's builder: the smallest NVIDIA x86 type (one T4) the variant boots on.
NVIDIA_BUILDER_TYPE = "g4dn.xlarge"
DESCRIPTION_LIMIT = 255  # EC2 CreateSnapshot: Description up to 255 characters


def bottlerocket_version(config: PlatformConfig) -> str:
    """The release the GPU pool pins, as its SSM parameters name it (`1.69.0`, or `latest`)."""
    alias = config.addons.karpenter.gpu_pool.ami_alias
    family, _, version = alias.partition("@")
    if family != BOTTLEROCKET:
        raise Refused(
            f"{AMI_ALIAS_KEY} is {alias}: a prefetched-image data volume needs a Bottlerocket GPU pool "
            "(bottlerocket@v<release>); AL2023 nodes have one root volume and pull in parallel instead"
        )
    return version.removeprefix("v")


def builder_variant(kubernetes: str, version: str) -> str:
    """The variant the builder boots: plain where it shares containerd with -nvidia, else the nodes' -nvidia."""
    plain = f"aws-k8s-{kubernetes}"
    parts = version.split(".")
    if len(parts) == 3 and all(part.isdigit() for part in parts) and tuple(map(int, parts)) >= SAME_CONTAINERD_SINCE:
        return plain
    return f"{plain}-nvidia"  # an older release, or `latest`, which cannot be compared


def is_nvidia(variant: str) -> bool:
    return variant.endswith("-nvidia")


def default_builder_type(variant: str) -> str:
    return NVIDIA_BUILDER_TYPE if is_nvidia(variant) else PLAIN_BUILDER_TYPE


@dataclass(frozen=True)
class SnapshotPlan:
    stack: str
    region: str
    bottlerocket_version: str
    variant: str
    ami_parameter: str
    instance_type: str
    subnet_id: str
    # The GPU pool's data volume: the snapshot may not be larger than the volume a node creates from it.
    volume_gib: int
    volume_iops: int
    volume_throughput_mibps: int
    images: tuple[ImageRef, ...]
    instance_profile: str | None  # None: a temporary role and instance profile

    @property
    def tags(self) -> dict[str, str]:
        return {
            STACK_TAG: self.stack,
            BOTTLEROCKET_TAG: self.bottlerocket_version,
            IMAGES_TAG: images_sha256(self.images),
        }

    @property
    def description(self) -> str:
        names = ", ".join(image.pod.rsplit("/", 1)[-1] for image in self.images)
        text = f"llm-platform {self.stack} GPU images (Bottlerocket {self.bottlerocket_version}): {names}"
        return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 3] + "..."

    def lines(self) -> list[str]:
        profile = self.instance_profile or "temporary role + instance profile (AmazonSSMManagedInstanceCore)"
        return [
            f"stack {self.stack}, region {self.region}, Bottlerocket {self.bottlerocket_version} ({self.variant})",
            f"AMI parameter: {self.ami_parameter}",
            f"instance: {self.instance_type} in {self.subnet_id}, {profile}",
            f"data volume {DATA_DEVICE}: {self.volume_gib} GiB gp3, {self.volume_iops} IOPS, "
            f"{self.volume_throughput_mibps} MiB/s, encrypted",
            f"images ({len(self.images)}):",
            *(f"  {image.containerd_name}  <- {image.upstream_name}  ({image.why})" for image in self.images),
            "snapshot tags: " + ", ".join(f"{key}={value}" for key, value in self.tags.items()),
        ]


def make_plan(
    config: PlatformConfig, stack: str, account_id: str, instance_type: str, subnet_id: str,
    instance_profile: str | None,
) -> SnapshotPlan:
    version = bottlerocket_version(config)
    variant = builder_variant(config.cluster.version, version)
    pool = config.addons.karpenter.gpu_pool
    return SnapshotPlan(
        stack=stack,
        region=config.region,
        bottlerocket_version=version,
        variant=variant,
        ami_parameter=AMI_PARAMETER.format(variant=variant, version=version),
        instance_type=instance_type,
        subnet_id=subnet_id,
        volume_gib=pool.root_volume_gib,
        volume_iops=pool.root_volume_iops,
        volume_throughput_mibps=pool.root_volume_throughput_mibps,
        images=tuple(gpu_node_images(config, account_id)),
        instance_profile=instance_profile,
    )
