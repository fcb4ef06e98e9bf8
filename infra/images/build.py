"""Build the data-volume snapshot: launch a Bottlerocket instance, prefetch the images onto /dev/xvdb over SSM,
stop it, snapshot the volume. Whatever happens, the instance and the temporary role and instance profile are gone
when `build_snapshot` returns or raises (`finally`); what could not be removed is named."""

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.images.plan import DATA_DEVICE, SnapshotPlan
from infra.images.remote import ADMIN_CONTAINER_USER_DATA, Poller, Remote, prefetch
from infra.models.errors import Failed
from stacks.gpu_images import STACK_TAG

SSM_POLICY = "arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
INSTANCE_TIMEOUT_S = 600
SNAPSHOT_TIMEOUT_S = 3600  # AWS blog/ai-on-eks run: a 150 GiB data volume took about 6 minutes
# A new instance profile takes a few seconds to be usable by EC2 (IAM is eventually consistent).
PROFILE_PROPAGATION_TIMEOUT_S = 120


@dataclass(frozen=True)
class Clients:
    ec2: Any
    iam: Any
    ssm: Any
    partition: str = "aws"


@dataclass
class Steps:
    """Each step's elapsed time, printed as it ends."""

    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    elapsed: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"{name} ...")
        start = self.clock()
        yield
        self.elapsed.append((name, self.clock() - start))
        self.say(f"{name}: {self.elapsed[-1][1]:.0f} s")


@dataclass
class Created:
    """What `build_snapshot` made that must not outlive it."""

    role: str | None = None
    profile: str | None = None
    instance_id: str | None = None


def _tags(plan: SnapshotPlan, name: str) -> list[dict[str, str]]:
    return [{"Key": "Name", "Value": name}, {"Key": STACK_TAG, "Value": plan.stack}]


def create_profile(clients: Clients, plan: SnapshotPlan, created: Created) -> str:
    name = f"llm-platform-images-{plan.stack}-{secrets.token_hex(4)}"
    clients.iam.create_role(
        RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST), Tags=_tags(plan, name),
        Description="Temporary: llm-platform images snapshot builder (SSM only)",
    )
    created.role = name
    clients.iam.attach_role_policy(RoleName=name, PolicyArn=SSM_POLICY.format(partition=clients.partition))
    clients.iam.create_instance_profile(InstanceProfileName=name)
    created.profile = name
    clients.iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return name


def _profile_not_ready(error: ClientError) -> bool:
    details = error.response.get("Error", {})
    return details.get("Code") == "InvalidParameterValue" and "iamInstanceProfile" in details.get("Message", "")


def launch(clients: Clients, plan: SnapshotPlan, ami: str, profile: str, poller: Poller) -> str:
    name = f"llm-platform-images-{plan.stack}"
    request = {
        "ImageId": ami,
        "InstanceType": plan.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": plan.subnet_id,
        "IamInstanceProfile": {"Name": profile},
        "UserData": ADMIN_CONTAINER_USER_DATA,
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": [{"DeviceName": DATA_DEVICE, "Ebs": {
            "VolumeSize": plan.volume_gib, "VolumeType": "gp3", "Iops": plan.volume_iops,
            "Throughput": plan.volume_throughput_mibps, "Encrypted": True, "DeleteOnTermination": True,
        }}],
        "TagSpecifications": [{"ResourceType": kind, "Tags": _tags(plan, name)} for kind in ("instance", "volume")],
    }

    def attempt() -> str | None:
        try:
            return str(clients.ec2.run_instances(**request)["Instances"][0]["InstanceId"])
        except ClientError as error:
            if _profile_not_ready(error):
                return None
            raise

    return poller.until("launch with the new instance profile", PROFILE_PROPAGATION_TIMEOUT_S, attempt)


def _instance(clients: Clients, instance_id: str) -> dict[str, Any]:
    found: dict[str, Any] = clients.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"][0]
    return found


def wait_state(clients: Clients, instance_id: str, state: str, poller: Poller) -> None:
    def reached() -> bool | None:
        try:
            return True if _instance(clients, instance_id)["State"]["Name"] == state else None
        except ClientError as error:
            # EC2 is eventually consistent: a new instance may not be described yet.
            if error.response.get("Error", {}).get("Code") == "InvalidInstanceID.NotFound":
                return None
            raise

    poller.until(f"instance {instance_id} {state}", INSTANCE_TIMEOUT_S, reached)


def data_volume(clients: Clients, instance_id: str) -> str:
    for mapping in _instance(clients, instance_id).get("BlockDeviceMappings", []):
        if mapping["DeviceName"] == DATA_DEVICE:
            return str(mapping["Ebs"]["VolumeId"])
    raise Failed(f"instance {instance_id} has no {DATA_DEVICE}")


def snapshot(clients: Clients, plan: SnapshotPlan, volume_id: str, poller: Poller) -> str:
    tags = [{"Key": "Name", "Value": f"llm-platform-{plan.stack}-gpu-images"}]
    tags += [{"Key": key, "Value": value} for key, value in plan.tags.items()]
    snapshot_id = str(clients.ec2.create_snapshot(
        VolumeId=volume_id, Description=plan.description,
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
    )["SnapshotId"])

    def completed() -> bool | None:
        state = clients.ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"]
        if state == "error":
            raise Failed(f"snapshot {snapshot_id} failed (state error)")
        return True if state == "completed" else None

    poller.until(f"snapshot {snapshot_id}", SNAPSHOT_TIMEOUT_S, completed)
    return snapshot_id


def build_snapshot(
    clients: Clients, plan: SnapshotPlan, remote: Remote, poller: Poller, steps: Steps
) -> str:
    """The snapshot id, once it is `completed`."""
    created = Created()
    failed = True
    try:
        with steps.step("resolve AMI"):
            ami = clients.ssm.get_parameter(Name=plan.ami_parameter)["Parameter"]["Value"]
        with steps.step("launch instance"):
            profile = plan.instance_profile or create_profile(clients, plan, created)
            created.instance_id = launch(clients, plan, ami, profile, poller)
            wait_state(clients, created.instance_id, "running", poller)
        with steps.step("wait for SSM"):
            remote.wait_online(created.instance_id)
        with steps.step("pull images"):
            prefetch(remote, created.instance_id, plan.images)
        with steps.step("stop instance"):
            clients.ec2.stop_instances(InstanceIds=[created.instance_id])
            wait_state(clients, created.instance_id, "stopped", poller)
        with steps.step("snapshot data volume"):
            snapshot_id = snapshot(clients, plan, data_volume(clients, created.instance_id), poller)
        failed = False
    finally:
        with steps.step("clean up"):
            left = clean_up(clients, created, poller)
        if left:
            message = "could not remove: " + "; ".join(left) + "; delete them by hand"
            if failed:
                steps.say(message)  # the error that stopped the build follows
            else:
                raise Failed(message)
    return snapshot_id


def clean_up(clients: Clients, created: Created, poller: Poller) -> list[str]:
    """Terminate the instance, then remove the temporary profile and role; each is attempted even if another
    fails. Returns what is left."""
    left: list[str] = []
    actions: list[tuple[str, Callable[[], object]]] = []
    if created.instance_id:
        instance_id = created.instance_id
        actions.append((f"instance {instance_id}", lambda: _terminate(clients, instance_id, poller)))
    if created.profile:
        actions.append((f"instance profile {created.profile}", lambda: _delete_profile(clients, created)))
    if created.role:
        actions.append((f"role {created.role}", lambda: _delete_role(clients, created)))
    for what, action in actions:
        try:
            action()
        except (ClientError, BotoCoreError, Failed) as error:
            left.append(f"{what} ({' '.join(str(error).split())})")
    return left


def _terminate(clients: Clients, instance_id: str, poller: Poller) -> None:
    clients.ec2.terminate_instances(InstanceIds=[instance_id])
    wait_state(clients, instance_id, "terminated", poller)


def _delete_profile(clients: Clients, created: Created) -> None:
    if created.role:
        try:
            clients.iam.remove_role_from_instance_profile(InstanceProfileName=created.profile, RoleName=created.role)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NoSuchEntity":  # never added
                raise
    clients.iam.delete_instance_profile(InstanceProfileName=created.profile)


def _delete_role(clients: Clients, created: Created) -> None:
    for policy in clients.iam.list_attached_role_policies(RoleName=created.role)["AttachedPolicies"]:
        clients.iam.detach_role_policy(RoleName=created.role, PolicyArn=policy["PolicyArn"])
    clients.iam.delete_role(RoleName=created.role)
