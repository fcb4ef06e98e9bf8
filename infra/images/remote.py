"""The seam between the snapshot build and the builder instance: waiting (a poll interval and a clock tests
replace) and shell commands over SSM Run Command. moto neither registers instances with SSM nor runs commands, so
tests fake `Remote`; everything else goes through moto.

The commands are those of aws-samples/bottlerocket-images-cache snapshot.sh (main at 3370ea0, 2025-04-15), run
with AWS-RunShellScript in Bottlerocket's control container: `apiclient exec admin sheltie` reaches the host from the
admin container (enabled by user data; sheltie runs its arguments on the host unchanged, `nsenter -t 1 -a -- "$@"`,
bottlerocket-admin-container sheltie since 87bf395), where `ctr` talks to containerd in the `k8s.io` namespace
kubelet uses. Images are pulled with the label `io.cri-containerd.image=managed`, which makes them CRI images kubelet
sees.
"""

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from botocore.exceptions import ClientError

from components import contracts
from infra.models.errors import Failed
from stacks.gpu_images import ImageRef

T = TypeVar("T")

ADMIN_CONTAINER_USER_DATA = "[settings.host-containers.admin]\nenabled = true\n"
SHELTIE = "apiclient exec admin sheltie"
CTR = f"{SHELTIE} ctr -a /run/containerd/containerd.sock -n k8s.io"
MANAGED_LABEL = "io.cri-containerd.image=managed"
RUNNING = ("Pending", "InProgress", "Delayed")
PULL_TIMEOUT_S = 3600  # one 8-10 GB image from Docker Hub
COMMAND_TIMEOUT_S = 300
ONLINE_TIMEOUT_S = 600


@dataclass(frozen=True)
class Poller:
    interval_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def until(self, what: str, timeout_s: float, check: Callable[[], T | None]) -> T:
        """`check()` until it returns something other than None; Failed after `timeout_s`."""
        deadline = self.clock() + timeout_s
        while (result := check()) is None:
            if self.clock() >= deadline:
                raise Failed(f"{what}: not done after {timeout_s:.0f} s")
            self.sleep(self.interval_s)
        return result


class Remote(Protocol):
    def wait_online(self, instance_id: str) -> None: ...

    def run(self, instance_id: str, comment: str, commands: list[str], timeout_s: int) -> str:
        """Run `commands` as one shell script; its standard output, or Failed."""
        ...


@dataclass(frozen=True)
class SsmRemote:
    ssm: Any
    poller: Poller = field(default_factory=Poller)

    def wait_online(self, instance_id: str) -> None:
        self.poller.until(f"SSM agent on {instance_id}", ONLINE_TIMEOUT_S, lambda: self._online(instance_id))

    def _online(self, instance_id: str) -> bool | None:
        found = self.ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
        )["InstanceInformationList"]
        return True if found and found[0].get("PingStatus") == "Online" else None

    def run(self, instance_id: str, comment: str, commands: list[str], timeout_s: int) -> str:
        command_id = self.ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName="AWS-RunShellScript",
            Comment=comment[:100],  # SendCommand allows 100 characters
            Parameters={"commands": commands, "executionTimeout": [str(timeout_s)]},
        )["Command"]["CommandId"]
        invocation = self.poller.until(comment, timeout_s + 60, lambda: self._finished(command_id, instance_id))
        if invocation["Status"] != "Success":
            output = " ".join((invocation.get("StandardErrorContent") or invocation.get("StandardOutputContent")
                               or "").split())
            raise Failed(f"{comment} on {instance_id}: {invocation['Status']}: {output[-400:]}")
        return str(invocation.get("StandardOutputContent", ""))

    def _finished(self, command_id: str, instance_id: str) -> dict[str, Any] | None:
        try:
            invocation: dict[str, Any] = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvocationDoesNotExist":  # not registered yet
                return None
            raise
        return None if invocation["Status"] in RUNNING else invocation


def stop_kubelet() -> list[str]:
    """The builder has no cluster: kubelet would only restart and pull the pause image."""
    return [f"{SHELTIE} systemctl stop kubelet"]


def remove_images() -> list[str]:
    """Start from an empty image store, so the snapshot holds exactly the listed images."""
    return [f"images=$({CTR} images ls -q)", f'if [ -n "$images" ]; then {CTR} images rm $images; fi']


def pull(image: ImageRef) -> list[str]:
    """Pull from upstream, then name it as pods do (`ctr images tag` copies the image record, labels included:
    containerd cmd/ctr/commands/images/tag.go)."""
    commands = [
        "set -e",
        f"{CTR} images pull --label {MANAGED_LABEL} --platform {contracts.NODE_ARCHITECTURE} "
        f"{shlex.quote(image.upstream_name)}",
    ]
    if image.containerd_name != image.upstream_name:
        commands.append(
            f"{CTR} images tag --force {shlex.quote(image.upstream_name)} {shlex.quote(image.containerd_name)}"
        )
    return commands


def list_ready_images() -> list[str]:
    """Names of the images whose content is all present (`ctr images check -q`) and that CRI manages (a containerd
    filter, pkg/filters: `labels."<key>"==<value>`)."""
    label = 'labels."{}"=={}'.format(*MANAGED_LABEL.split("="))
    return [f"{CTR} images check -q {shlex.quote(label)}"]


def prefetch(remote: Remote, instance_id: str, images: tuple[ImageRef, ...]) -> None:
    """Pull every image onto the data volume under the name its pods use, and check they are all there."""
    remote.run(instance_id, "stop kubelet", stop_kubelet(), COMMAND_TIMEOUT_S)
    remote.run(instance_id, "remove existing images", remove_images(), COMMAND_TIMEOUT_S)
    for image in images:
        remote.run(instance_id, f"pull {image.upstream_name}", pull(image), PULL_TIMEOUT_S)
    ready = set(remote.run(instance_id, "check images", list_ready_images(), COMMAND_TIMEOUT_S).split())
    missing = [image.containerd_name for image in images if image.containerd_name not in ready]
    if missing:
        raise Failed(f"not complete on the data volume after pulling: {', '.join(missing)}")
