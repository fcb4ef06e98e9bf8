"""The image snapshot a GPU pool starts its data volume from (`addons.karpenter.gpuPool.imageSnapshotId`), checked
before anything is deployed: Karpenter would otherwise find out at the first GPU node launch, as a NodeClaim that
never launches, or as a node that pulls what the snapshot should have held.

A real preview looks the snapshot up (EC2 DescribeSnapshots, through the provider's `aws.ebs.getSnapshot`): a
snapshot that does not exist fails the invoke, and what `llm-platform images snapshot` records in its tags is held
to what this stack runs.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from stacks.config import PlatformConfig
from stacks.gpu_images import IMAGES_TAG, gpu_node_images, images_sha256

SNAPSHOT_KEY = "llm-platform:addons.karpenter.gpuPool.imageSnapshotId"
REBUILD = "rebuild it with `llm-platform images snapshot --stack <stack>`"


@dataclass(frozen=True)
class SnapshotFacts:
    """What DescribeSnapshots says of the snapshot."""

    snapshot_id: str
    state: str
    encrypted: bool
    volume_gib: int
    tags: Mapping[str, str]


def snapshot_findings(
    facts: SnapshotFacts, images_fingerprint: str, node_volume_gib: int
) -> tuple[list[str], list[str]]:
    """(errors that stop the deploy, warnings) about a snapshot GPU nodes are to start from."""
    errors, warnings = [], []
    where = f"{SNAPSHOT_KEY}: {facts.snapshot_id}"
    if facts.state != "completed":
        errors.append(f"{where} is {facts.state}, not completed: wait for it, or {REBUILD}")
    if not facts.encrypted:
        errors.append(f"{where} is not encrypted, so neither would GPU nodes' data volumes be: {REBUILD}")
    if facts.volume_gib > node_volume_gib:
        errors.append(
            f"{where} is of a {facts.volume_gib} GiB volume, larger than gpuPool.rootVolumeGib {node_volume_gib}: "
            "EC2 cannot create a smaller volume from it; raise rootVolumeGib"
        )
    recorded = facts.tags.get(IMAGES_TAG)
    if recorded is None:
        warnings.append(f"{where} has no {IMAGES_TAG} tag: what it holds is unknown, GPU pods may pull; {REBUILD}")
    elif recorded != images_fingerprint:
        warnings.append(
            f"{where} holds other images than this stack's GPU pods run (a vLLM or image change since it was "
            f"built): new GPU nodes will pull them, and start slower than the budget; {REBUILD}"
        )
    return errors, warnings


def report(findings: tuple[list[str], list[str]]) -> None:
    errors, warnings = findings
    for warning in warnings:
        pulumi.log.warn(warning)
    if errors:
        # A RunError is printed as its message, without a Python traceback.
        raise pulumi.RunError("\n".join(errors))


def check_image_snapshot(config: PlatformConfig, account_id: str, provider: aws.Provider) -> None:
    """Look the GPU pool's image snapshot up and report what is wrong with it, if the pool has one."""
    pool = config.addons.karpenter.gpu_pool
    if pool.image_snapshot_id is None:
        return
    fingerprint = images_sha256(gpu_node_images(config, account_id))
    found = aws.ebs.get_snapshot_output(
        snapshot_ids=[pool.image_snapshot_id], opts=pulumi.InvokeOptions(provider=provider)
    )
    found.apply(lambda snapshot: report(snapshot_findings(facts_of(snapshot), fingerprint, pool.root_volume_gib)))


def facts_of(snapshot: aws.ebs.GetSnapshotResult) -> SnapshotFacts:
    return SnapshotFacts(
        snapshot.snapshot_id, snapshot.state, snapshot.encrypted, snapshot.volume_size, snapshot.tags or {}
    )
