"""Every container image a pod on a GPU node runs, under the reference its pod spec names: the list a prefetched
data-volume snapshot must hold (`llm-platform images snapshot`, infra/images/). It reads the same constants and
configuration the components do; tests/images/test_gpu_images.py renders the stack and holds the two together.

Not listed: DaemonSets that tolerate every taint (log shipping, node-exporter, the EKS add-ons). They are small,
pull in parallel while the node starts, and no vLLM pod waits for them.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from components.gpu_metrics import dcgm_image
from components.image_cache import cached_image
from components.versions import AWS_CLI_IMAGE, PAUSE_IMAGE, VLLM_IMAGE
from stacks.config import PlatformConfig

DOCKER_HUB = "docker.io"
# What `llm-platform images snapshot` tags a snapshot with, and what the stack checks before it deploys one.
STACK_TAG = "llm-platform:stack"
BOTTLEROCKET_TAG = "llm-platform:bottlerocket"
IMAGES_TAG = "llm-platform:images-sha256"


@dataclass(frozen=True)
class ImageRef:
    """`pod`: the image as the pod spec names it; `upstream`: where to pull it from when building a snapshot (a
    first deploy has no pull-through cache yet); `why`: which pods run it."""

    pod: str
    upstream: str
    why: str

    @property
    def containerd_name(self) -> str:
        """The name containerd stores the image under, which is the one kubelet looks up for `pod`."""
        return normalized(self.pod)

    @property
    def upstream_name(self) -> str:
        return normalized(self.upstream)


def normalized(reference: str) -> str:
    """A reference as containerd's CRI plugin names it (distribution/reference ParseNormalizedNamed): a name
    without a registry is Docker Hub's, a single-segment Docker Hub name is under `library/`, no tag means
    `latest`."""
    first, _, rest = reference.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        first, rest = DOCKER_HUB, reference
        if "/" not in rest:
            rest = f"library/{rest}"
    name = f"{first}/{rest}"
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last or "@" in last else f"{name}:latest"


def vllm_pod_image(config: PlatformConfig, account_id: str) -> str:
    """The vLLM image as GPU nodes pull it: through the ECR pull-through cache when one is configured."""
    if config.addons.image_cache.docker_hub_credential_arn:
        return cached_image(VLLM_IMAGE, account_id, config.region)
    return VLLM_IMAGE


def gpu_node_images(config: PlatformConfig, account_id: str) -> list[ImageRef]:
    """The images of the vLLM pods, the compile cache's sync containers, dcgm-exporter and the warm-capacity
    placeholder, as `config` deploys them on its GPU pool (sorted by pod reference, no duplicates)."""
    serving = config.serving
    images = [
        ImageRef(vllm_pod_image(config, account_id), VLLM_IMAGE, "vLLM"),
        ImageRef(dcgm_image(), dcgm_image(), "dcgm-exporter DaemonSet"),
    ]
    if serving.vllm.shared_compile_cache:
        images.append(ImageRef(AWS_CLI_IMAGE, AWS_CLI_IMAGE, "vLLM's compile-cache sync containers"))
    if serving.warm_capacity.enabled:
        images.append(ImageRef(PAUSE_IMAGE, PAUSE_IMAGE, "warm-capacity placeholder"))
    return sorted(images, key=lambda image: image.pod)



def images_sha256(images: Iterable[ImageRef]) -> str:
    """Fingerprint of what a snapshot holds: sha256 of the pod references, sorted, one per line."""
    return hashlib.sha256("\n".join(sorted(image.pod for image in images)).encode()).hexdigest()
