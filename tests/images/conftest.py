"""Fixtures for `images snapshot`: a moto AWS (EC2, IAM with AWS's managed policies, SSM with Bottlerocket's public
AMI parameter), a fake of the builder's SSM shell, no real waiting, and a copy of the stack files whose prod GPU
pool runs Bottlerocket."""

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from graph_helpers import copy_stack_files
from moto import mock_aws
from moto.ssm.models import Parameter, ssm_backends

from infra import stackfile
from infra.images import cli
from infra.images.remote import Poller
from infra.mocks import ACCOUNT_ID
from infra.models.errors import Failed

REGION = "us-west-2"  # the prod stack's
BOTTLEROCKET_ALIAS = "bottlerocket@v1.69.0"
# Karpenter v1.14.1 pkg/providers/amifamily/bottlerocket.go: /aws/service/bottlerocket/<variant>/x86_64/<version
# without its "v">/image_id. From 1.69.0 the builder boots the plain variant; before, the nodes' -nvidia one.
AMI_PARAMETER = "/aws/service/bottlerocket/aws-k8s-1.35/x86_64/1.69.0/image_id"
NVIDIA_AMI_PARAMETER = "/aws/service/bottlerocket/aws-k8s-1.35-nvidia/x86_64/1.68.1/image_id"
# The format AWS gives snapshot ids (EC2 API reference, Snapshot.SnapshotId): 8 or 17 hex digits.
SNAPSHOT_ID = re.compile(r"^snap-([0-9a-f]{8}|[0-9a-f]{17})$")


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # not the stack's: the command must use the stack's


@dataclass
class Aws:
    ec2: Any
    iam: Any
    ami: str
    # moto's own AMIs come with snapshots: only those made after the fixture count.
    existing_snapshots: set[str] = field(default_factory=set)

    def instance_states(self) -> list[str]:
        return [instance["State"]["Name"] for reservation in self.ec2.describe_instances()["Reservations"]
                for instance in reservation["Instances"]]

    def roles(self) -> list[str]:
        return [role["RoleName"] for role in self.iam.list_roles()["Roles"]]

    def instance_profiles(self) -> list[str]:
        return [profile["InstanceProfileName"] for profile in self.iam.list_instance_profiles()["InstanceProfiles"]]

    def snapshots(self) -> list[dict[str, Any]]:
        return [snapshot for snapshot in self.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
                if snapshot["SnapshotId"] not in self.existing_snapshots]


def publish_public_parameter(name: str, value: str) -> None:
    """AWS publishes /aws/service/ parameters; moto refuses PutParameter there, so add it to moto's store."""
    store = ssm_backends[ACCOUNT_ID][REGION]._parameters
    store[name].append(Parameter(
        account_id=ACCOUNT_ID, name=name, value=value, parameter_type="String", description=None,
        allowed_pattern=None, keyid=None, last_modified_date=0, version=1, data_type="aws:ec2:image",
    ))


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        ec2 = boto3.client("ec2", region_name=REGION)
        ami = next(image["ImageId"] for image in ec2.describe_images(Owners=["amazon"])["Images"]
                   if image.get("Architecture") == "x86_64")
        for parameter in (AMI_PARAMETER, NVIDIA_AMI_PARAMETER):
            publish_public_parameter(parameter, ami)
        existing = {snapshot["SnapshotId"] for snapshot in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
        yield Aws(ec2, boto3.client("iam", region_name=REGION), ami, existing)


@dataclass
class FakeRemote:
    """The builder's shell as containerd would answer: pulled and tagged names are listed by the check command.
    `fail` makes the command whose comment contains it fail; `lose` leaves a name out of the check."""

    fail: str | None = None
    lose: str | None = None
    online: list[str] = field(default_factory=list)
    runs: list[tuple[str, str, list[str]]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def wait_online(self, instance_id: str) -> None:
        self.online.append(instance_id)

    def run(self, instance_id: str, comment: str, commands: list[str], timeout_s: int) -> str:
        self.runs.append((instance_id, comment, commands))
        if self.fail and self.fail in comment:
            raise Failed(f"{comment} on {instance_id}: Failed: simulated")
        for line in commands:
            if " images pull " in line or " images tag " in line:
                self.names.add(shlex.split(line)[-1])
        if " images check " in commands[-1]:
            return "\n".join(sorted(self.names - {self.lose}))
        return ""


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch) -> FakeRemote:
    """The fake shell, and no real waiting: a poll interval of 0 and a sleep that returns at once."""
    fake = FakeRemote()
    poller = Poller(interval_s=0, sleep=lambda seconds: None)
    monkeypatch.setattr(cli, "SEAMS", cli.Seams(remote=lambda ssm, poller: fake, poller=poller))
    return fake


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's stack files; prod's GPU pool on Bottlerocket (written with the project's writer)."""
    directory = copy_stack_files(tmp_path / "project")
    stackfile.prepare(directory, "prod", {("addons", "karpenter", "gpuPool", "amiAlias"): BOTTLEROCKET_ALIAS}).commit()
    return directory
