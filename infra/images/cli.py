"""`llm-platform images snapshot`: an EBS snapshot of a Bottlerocket data volume that already holds every image GPU-node
pods run, written to the stack as addons.karpenter.gpuPool.imageSnapshotId. Exit codes: 0 done, 1 AWS or a remote
command failed (nothing left running), 2 refused (bad stack or input; nothing created)."""

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer
from botocore.exceptions import ClientError
from rich.console import Console

from infra import stackfile
from infra.images.build import Clients, Steps, build_snapshot
from infra.images.plan import (
    SNAPSHOT_KEY,
    SnapshotPlan,
    bottlerocket_version,
    builder_variant,
    default_builder_type,
    is_nvidia,
    make_plan,
)
from infra.images.remote import Poller, Remote, SsmRemote
from infra.models.cli import handled
from infra.models.errors import Refused
from stacks.config import PlatformConfig
from stacks.loader import load_stack_file

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(emoji=False, highlight=False)
errors = Console(stderr=True, emoji=False, highlight=False, soft_wrap=True)
SNAPSHOT_KEY_NAME = ".".join(SNAPSHOT_KEY)


@app.callback()
def images() -> None:
    """A group, so `images snapshot` keeps its name while it is the only command."""


@dataclass(frozen=True)
class Seams:
    """What tests replace: SSM (moto registers no instance and runs no command) and time."""

    remote: Callable[[Any, Poller], Remote] = SsmRemote
    poller: Poller = field(default_factory=Poller)
    clock: Callable[[], float] = time.monotonic


SEAMS = Seams()


def check_writable(project_dir: Path, stack: str) -> None:
    """Refuse before building when the stack file could not take the snapshot id (validated as it will be)."""
    probe = f"snap-{secrets.token_hex(9)[:17]}"
    try:
        stackfile.prepare(project_dir, stack, {SNAPSHOT_KEY: probe}).discard()
    except Refused as error:
        raise Refused(f"{SNAPSHOT_KEY_NAME} cannot be set in this stack: {error} (--no-write builds anyway)") from None


def check_instance_type(ec2: Any, instance_type: str, variant: str) -> None:
    """The builder boots an x86_64 AMI; the -nvidia variant only on an NVIDIA GPU type."""
    try:
        (found,) = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "InvalidInstanceType":
            raise Refused(f"--instance-type {instance_type}: no such EC2 instance type") from None
        raise
    architectures = found["ProcessorInfo"]["SupportedArchitectures"]
    if "x86_64" not in architectures:
        raise Refused(f"--instance-type {instance_type} is {', '.join(architectures)}; the GPU nodes' AMI is x86_64: "
                      f"pick an x86_64 type such as {default_builder_type(variant)}")
    gpus = {gpu.get("Manufacturer") for gpu in found.get("GpuInfo", {}).get("Gpus", [])}
    if is_nvidia(variant) and "NVIDIA" not in gpus:
        raise Refused(f"--instance-type {instance_type} has no NVIDIA GPU, which {variant} needs to boot: pick one "
                      f"such as {default_builder_type(variant)}")


def default_subnet(ec2: Any, instance_type: str, region: str) -> str:
    """A default-VPC subnet (public, so the instance reaches the registries and SSM) in a zone offering the type."""
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    if not subnets:
        raise Refused(
            f"no default VPC in {region}: pass --subnet-id, a subnet whose instances reach the internet (Docker Hub, "
            "nvcr.io, public.ecr.aws, registry.k8s.io) and SSM"
        )
    offerings = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [instance_type]}]
    )["InstanceTypeOfferings"]
    zones = {offering["Location"] for offering in offerings}
    usable = sorted((subnet["AvailabilityZone"], subnet["SubnetId"]) for subnet in subnets
                    if subnet["AvailabilityZone"] in zones)
    if not usable:
        raise Refused(f"{instance_type} is not offered in the default VPC's zones in {region}: pass another "
                      "--instance-type or a --subnet-id")
    return usable[0][1]


def plan_snapshot(
    config: PlatformConfig, stack: str, session: boto3.session.Session, instance_type: str | None,
    subnet_id: str | None, instance_profile: str | None,
) -> tuple[Clients, SnapshotPlan]:
    """Clients in the stack's region (the snapshot must be where its nodes are) and the plan; creates nothing."""
    arn = str(session.client("sts", region_name=config.region).get_caller_identity()["Arn"])
    ec2 = session.client("ec2", region_name=config.region)
    clients = Clients(
        ec2=ec2, iam=session.client("iam", region_name=config.region),
        ssm=session.client("ssm", region_name=config.region), partition=arn.split(":")[1],
    )
    variant = builder_variant(config.cluster.version, bottlerocket_version(config))
    chosen = instance_type or default_builder_type(variant)
    check_instance_type(ec2, chosen, variant)
    subnet = subnet_id or default_subnet(ec2, chosen, config.region)
    return clients, make_plan(config, stack, arn.split(":")[4], chosen, subnet, instance_profile)


def _write(project_dir: Path, stack: str, snapshot_id: str) -> None:
    edit = stackfile.prepare(project_dir, stack, {SNAPSHOT_KEY: snapshot_id})
    edit.commit()
    change = "set" if edit.staged else "already set"
    console.print(f"{change} {SNAPSHOT_KEY_NAME}: {snapshot_id} in {edit.path.name}", markup=False)
    cwd = "" if project_dir == Path(".") else f" --cwd {project_dir}"
    console.print(f"now run: pulumi up -s {stack}{cwd}", markup=False)


@app.command()
def snapshot(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Stack whose GPU pool to build for.")],
    project_dir: Annotated[Path, typer.Option("--project-dir", help="Folder holding the stack files.")] = Path("."),
    instance_type: Annotated[
        str | None, typer.Option(help="x86_64 type of the builder. Default: m7i.large, or g4dn.xlarge where it must "
                                      "boot the -nvidia variant (Bottlerocket before 1.69.0).")
    ] = None,
    subnet_id: Annotated[
        str | None, typer.Option(help="Subnet with internet access. Default: the default VPC's, in the region.")
    ] = None,
    instance_profile: Annotated[
        str | None, typer.Option(help="Existing instance profile with AmazonSSMManagedInstanceCore. Default: a "
                                      "temporary role and profile, removed at the end.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; create nothing.")] = False,
    write: Annotated[bool, typer.Option(help=f"Set {SNAPSHOT_KEY_NAME} in Pulumi.<stack>.yaml.")] = True,
) -> None:
    """Build the GPU nodes' data-volume snapshot with their images prefetched (about 10-20 minutes)."""
    with handled():
        stackfile.existing_stack_file(project_dir, stack)
        config = load_stack_file(project_dir, stack)
        bottlerocket_version(config)  # refused before any AWS call
        if write and not dry_run:
            check_writable(project_dir, stack)
        clients, plan = plan_snapshot(config, stack, boto3.session.Session(), instance_type, subnet_id,
                                      instance_profile)
        for line in plan.lines():
            console.print(line, markup=False)
        if dry_run:
            console.print("dry run: nothing created", markup=False)
            return
        steps = Steps(say=lambda text: errors.print(text, style="dim", markup=False), clock=SEAMS.clock)
        snapshot_id = build_snapshot(clients, plan, SEAMS.remote(clients.ssm, SEAMS.poller), SEAMS.poller, steps)
        console.print(f"snapshot {snapshot_id} completed in {plan.region}", markup=False)
        for name, seconds in steps.elapsed:
            console.print(f"  {name:<22} {seconds:6.0f} s", markup=False)
        if write:
            _write(project_dir, stack, snapshot_id)
