"""`images snapshot` against moto: the plan, a build that leaves a tagged snapshot and nothing else, a failure that
leaves nothing and does not touch the stack file, and the refusals."""

import difflib
import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra import stackfile
from infra.images.cli import app
from infra.images.plan import builder_variant
from infra.images.remote import Poller
from infra.models.errors import Failed
from infra.offline import preview_stack
from stacks.loader import ConfigError

from .conftest import AMI_PARAMETER, NVIDIA_AMI_PARAMETER, SNAPSHOT_ID, Aws, FakeRemote
from .test_gpu_images import rendered_gpu_images

runner = CliRunner()
# Hand-written: GpuPoolConfig's data volume (components/node_pools.py default, prod does not change it).
PROD_GPU_VOLUME_GIB = 200


def snapshot(project: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["snapshot", "--stack", "prod", "--project-dir", str(project), *args])


def gpu_pod_images(project: Path) -> set[str]:
    """The independent record: what the rendered stack runs on its GPU pool."""
    return set(rendered_gpu_images(preview_stack(project, "prod")))


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [line[2:] for line in diff if line.startswith("- ")], [line[2:] for line in diff if line.startswith("+ ")]


def test_dry_run_plans_the_gpu_images_and_creates_nothing(aws: Aws, project: Path, remote: FakeRemote) -> None:
    before = (project / "Pulumi.prod.yaml").read_text()
    result = snapshot(project, "--dry-run")
    assert result.exit_code == 0, result.output
    planned = {line.split()[0] for line in result.stdout.splitlines() if "  <- " in line}
    # containerd names: Docker Hub images get their registry (docker.io), the others are named in full already.
    assert planned == {name if "." in name.split("/")[0] else f"docker.io/{name}" for name in gpu_pod_images(project)}
    assert AMI_PARAMETER in result.stdout
    assert f"{PROD_GPU_VOLUME_GIB} GiB gp3" in result.stdout and "encrypted" in result.stdout
    default_subnets = {subnet["SubnetId"] for subnet in aws.ec2.describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]}
    assert any(subnet in result.stdout for subnet in default_subnets), result.stdout
    assert (aws.instance_states(), aws.roles(), aws.instance_profiles(), aws.snapshots()) == ([], [], [], [])
    assert remote.runs == [] and (project / "Pulumi.prod.yaml").read_text() == before


def test_a_build_leaves_a_tagged_snapshot_its_id_in_the_stack_and_nothing_running(
    aws: Aws, project: Path, remote: FakeRemote
) -> None:
    images = gpu_pod_images(project)
    before = (project / "Pulumi.prod.yaml").read_text()
    result = snapshot(project)
    assert result.exit_code == 0, result.output

    (made,) = aws.snapshots()
    tags = {tag["Key"]: tag["Value"] for tag in made["Tags"]}
    assert tags["llm-platform:stack"] == "prod" and tags["llm-platform:bottlerocket"] == "1.69.0"
    assert tags["llm-platform:images-sha256"] == hashlib.sha256("\n".join(sorted(images)).encode()).hexdigest()
    assert "vllm-openai:v" in made["Description"], made["Description"]
    assert made["Encrypted"] and made["VolumeSize"] == PROD_GPU_VOLUME_GIB
    assert SNAPSHOT_ID.match(made["SnapshotId"]) and f"snapshot {made['SnapshotId']} completed" in result.stdout
    for step in ("launch instance", "pull images", "snapshot data volume", "clean up"):
        assert step in result.stdout, result.stdout

    # Exactly one line changes: the id under gpuPool (it replaces the one the shipped file has, if any).
    removed, added = changed_lines(before, (project / "Pulumi.prod.yaml").read_text())
    assert added == [f"        imageSnapshotId: {made['SnapshotId']}"], added
    assert len(removed) <= 1 and all(line.startswith("        imageSnapshotId: snap-") for line in removed), removed
    assert set(aws.instance_states()) == {"terminated"}
    assert (aws.roles(), aws.instance_profiles()) == ([], [])


def test_images_are_pulled_from_upstream_for_cri_and_checked(aws: Aws, project: Path, remote: FakeRemote) -> None:
    assert snapshot(project, "--no-write").exit_code == 0
    comments = [comment for _, comment, _ in remote.runs]
    assert comments[:2] == ["stop kubelet", "remove existing images"] and comments[-1] == "check images"
    pulls = [" ".join(commands) for _, comment, commands in remote.runs if comment.startswith("pull ")]
    assert len(pulls) == len(gpu_pod_images(project))
    for pull in pulls:
        # aws-samples/bottlerocket-images-cache snapshot.sh: ctr in k8s.io, labelled as a CRI-managed image.
        assert "apiclient exec admin sheltie ctr -a /run/containerd/containerd.sock -n k8s.io images pull" in pull
        assert "--label io.cri-containerd.image=managed --platform amd64" in pull
    assert any("docker.io/vllm/vllm-openai:v" in pull for pull in pulls)


def test_no_write_leaves_the_stack_file(aws: Aws, project: Path, remote: FakeRemote) -> None:
    before = (project / "Pulumi.prod.yaml").read_text()
    assert snapshot(project, "--no-write").exit_code == 0
    assert len(aws.snapshots()) == 1 and (project / "Pulumi.prod.yaml").read_text() == before


@pytest.mark.parametrize(("fail", "lose"), [("pull docker.io/vllm", None), (None, "registry.k8s.io/pause:3.10")])
def test_a_failure_midway_leaves_nothing_and_keeps_the_stack_file(
    aws: Aws, project: Path, remote: FakeRemote, fail: str | None, lose: str | None
) -> None:
    remote.fail, remote.lose = fail, lose
    before = (project / "Pulumi.prod.yaml").read_text()
    result = snapshot(project)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("failed: "), result.stderr
    assert "Traceback" not in result.output
    assert set(aws.instance_states()) == {"terminated"}
    assert (aws.roles(), aws.instance_profiles(), aws.snapshots()) == ([], [], [])
    assert (project / "Pulumi.prod.yaml").read_text() == before


def test_an_existing_instance_profile_is_used_and_kept(aws: Aws, project: Path, remote: FakeRemote) -> None:
    aws.iam.create_role(RoleName="builder", AssumeRolePolicyDocument="{}")
    aws.iam.create_instance_profile(InstanceProfileName="builder")
    aws.iam.add_role_to_instance_profile(InstanceProfileName="builder", RoleName="builder")
    assert snapshot(project, "--instance-profile", "builder", "--no-write").exit_code == 0
    assert (aws.roles(), aws.instance_profiles()) == (["builder"], ["builder"])


def refusal(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return str(result.stderr.strip().splitlines()[-1])


def test_an_al2023_gpu_pool_is_refused_naming_the_key(aws: Aws, project: Path, remote: FakeRemote) -> None:
    # dev's GPU pool runs AL2023 (the dev profile's default).
    line = refusal(runner.invoke(app, ["snapshot", "--stack", "dev", "--project-dir", str(project)]))
    assert "addons.karpenter.gpuPool.amiAlias" in line and "al2023@" in line, line
    assert aws.instance_states() == [] and remote.runs == []


def test_an_unknown_stack_is_refused(aws: Aws, project: Path, remote: FakeRemote) -> None:
    line = refusal(runner.invoke(app, ["snapshot", "--stack", "staging", "--project-dir", str(project)]))
    assert "unknown stack 'staging'" in line, line


def test_without_a_default_vpc_it_asks_for_a_subnet(aws: Aws, project: Path, remote: FakeRemote) -> None:
    for subnet in aws.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]:
        aws.ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    line = refusal(snapshot(project, "--dry-run"))
    assert "--subnet-id" in line, line


def test_waiting_gives_up_at_the_timeout_without_sleeping() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    poller = Poller(interval_s=5, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(Failed, match="not done after 60 s"):
        poller.until("the thing", 60, lambda: None)
    assert sum(slept) == 60


def test_a_stack_file_that_cannot_take_the_id_is_refused_before_building(
    aws: Aws, project: Path, remote: FakeRemote, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(stack: str, values: object, source: str) -> None:
        raise ConfigError(f"{source}: llm-platform:addons.karpenter.gpuPool.imageSnapshotId: not allowed here")

    monkeypatch.setattr(stackfile, "validate", refuse)
    line = refusal(snapshot(project))
    assert "addons.karpenter.gpuPool.imageSnapshotId" in line and "--no-write" in line, line
    assert (aws.instance_states(), aws.roles(), aws.snapshots(), remote.runs) == ([], [], [], [])


@pytest.mark.parametrize(("instance_type", "says"), [("m7g.large", "arm64"), ("zz9.large", "no such")])
def test_a_builder_type_that_cannot_run_the_ami_is_refused(
    aws: Aws, project: Path, remote: FakeRemote, instance_type: str, says: str
) -> None:
    line = refusal(snapshot(project, "--instance-type", instance_type))
    assert f"--instance-type {instance_type}" in line and says in line, line
    assert (aws.instance_states(), aws.roles()) == ([], [])


def pin(project: Path, alias: str) -> None:
    stackfile.prepare(project, "prod", {("addons", "karpenter", "gpuPool", "amiAlias"): alias}).commit()


def test_before_1_69_the_builder_boots_the_nodes_nvidia_ami_on_a_gpu_type(
    aws: Aws, project: Path, remote: FakeRemote
) -> None:
    pin(project, "bottlerocket@v1.68.1")
    plan = snapshot(project, "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert NVIDIA_AMI_PARAMETER in plan.stdout and "g4dn.xlarge" in plan.stdout, plan.stdout
    result = snapshot(project, "--no-write")
    assert result.exit_code == 0, result.output
    (made,) = aws.snapshots()
    assert {tag["Key"]: tag["Value"] for tag in made["Tags"]}["llm-platform:bottlerocket"] == "1.68.1"
    line = refusal(snapshot(project, "--instance-type", "m7i.large"))
    assert "no NVIDIA GPU" in line and "aws-k8s-1.35-nvidia" in line, line


@pytest.mark.parametrize(
    ("version", "variant"),
    # v1.69.0 release notes: "Use containerd 2.3 in all variants"; `latest` cannot be compared, so the nodes' own.
    [("1.69.0", "aws-k8s-1.35"), ("1.70.2", "aws-k8s-1.35"), ("1.100.0", "aws-k8s-1.35"),
     ("1.68.1", "aws-k8s-1.35-nvidia"), ("latest", "aws-k8s-1.35-nvidia")],
)
def test_builder_variant(version: str, variant: str) -> None:
    assert builder_variant("1.35", version) == variant
