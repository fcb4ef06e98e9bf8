"""`llm-platform models ...`: the typer commands over infra/models/release.py. Exit codes: 0 done, 1 a check
failed (verify), a concurrent writer won or AWS answered with an error, 2 refused (bad input or state; nothing
changed)."""

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import boto3
import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from infra import stackfile
from infra.models import release, targets
from infra.models.errors import Failed, Refused
from infra.models.manifest import MANIFEST_NAME, check_name, check_version, scan_model_dir, version_prefix
from infra.models.registry import ACTIVE, Registry
from stacks.loader import ConfigError, load_stack_file

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(emoji=False, highlight=False)
errors = Console(stderr=True, emoji=False, highlight=False, soft_wrap=True)

# Hugging Face files worth serving: weights (safetensors), configs, tokenizers, chat templates.
HF_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.py"]

Stack = Annotated[
    str, typer.Option("--stack", "-s", help="Stack whose bucket and registry to use (Pulumi.<stack>.yaml).")
]
Name = Annotated[str, typer.Option("--name", "-n", help="Model name, like qwen2.5-7b-instruct.")]
Version = Annotated[str, typer.Option("--version", "-v", help="Model version, MAJOR.MINOR.PATCH[-pre].")]
ProjectDir = Annotated[Path, typer.Option("--project-dir", help="Folder holding the stack files.")]
Bucket = Annotated[
    str | None, typer.Option("--bucket", envvar=targets.BUCKET_ENV, help="Model bucket, when the stack has no outputs.")
]
TableName = Annotated[
    str | None, typer.Option("--table", envvar=targets.TABLE_ENV, help="Registry table, when the stack has no outputs.")
]


@contextmanager
def handled() -> Iterator[None]:
    """One line on stderr and the exit code instead of a traceback."""
    try:
        yield
    except Refused as error:
        errors.print(f"refused: {error}", markup=False)
        raise typer.Exit(2) from None
    except ConfigError as error:
        errors.print(" / ".join(str(error).splitlines()), markup=False)
        raise typer.Exit(2) from None
    except Failed as error:
        errors.print(f"failed: {error}", markup=False)
        raise typer.Exit(1) from None
    except (ClientError, BotoCoreError) as error:
        errors.print(f"AWS error: {' '.join(str(error).split())}", markup=False)
        raise typer.Exit(1) from None


def _actor(session: boto3.session.Session, region: str) -> str:
    """Who ran the command, for the manifest and the registry history."""
    try:
        return str(session.client("sts", region_name=region).get_caller_identity()["Arn"])
    except (ClientError, BotoCoreError):
        return getpass.getuser()


def check_inputs(stack: str, project_dir: Path, name: str | None = None, version: str | None = None) -> None:
    """Everything that can be refused without AWS: names, version, the stack file."""
    if name is not None:
        check_name(name)
    if version is not None:
        check_version(version)
    stackfile.existing_stack_file(project_dir, stack)


def connect(stack: str, project_dir: Path, bucket: str | None, table: str | None) -> release.Backend:
    chosen = targets.resolve(stack, project_dir, bucket, table)
    session = boto3.session.Session()
    # Without an AWS region in the environment or profile, use the stack's own.
    region = session.region_name or load_stack_file(project_dir, stack).region
    dynamodb = session.resource("dynamodb", region_name=region)
    registry = Registry(dynamodb.Table(chosen.table), _actor(session, region))
    errors.print(f"s3://{chosen.bucket}, table {chosen.table} ({chosen.origin}, {region})", style="dim")
    return release.Backend(session.client("s3", region_name=region), chosen.bucket, registry)


@contextmanager
def progress_bars() -> Iterator[release.Phase]:
    bars = Progress(
        TextColumn("{task.description:>14}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=errors
    )

    def phase(description: str, total: int) -> Callable[[int], None]:
        task = bars.add_task(description, total=total)
        return lambda done: bars.advance(task, done)

    with bars:
        yield phase


def _download(repo_id: str, revision: str) -> tuple[Path, str]:
    """A Hugging Face snapshot in the local cache; its folder is named after the resolved commit."""
    from huggingface_hub import snapshot_download

    path = Path(str(snapshot_download(repo_id, revision=revision, allow_patterns=HF_PATTERNS)))
    return path, path.name


@app.command()
def publish(
    source: Annotated[str, typer.Argument(help="Model directory, or a Hugging Face repo id with --revision.")],
    name: Name,
    version: Version,
    stack: Stack,
    revision: Annotated[
        str | None, typer.Option("--revision", help="SOURCE is a Hugging Face repo id: download this revision.")
    ] = None,
    project_dir: ProjectDir = Path("."),
    bucket: Bucket = None,
    table: TableName = None,
) -> None:
    """Upload a model version to s3://<bucket>/models/<name>/<version>/ and register it (staged)."""
    with handled():
        check_inputs(stack, project_dir, name, version)
        origin: tuple[str, str | None]
        if revision is None:
            scan_model_dir(Path(source))  # refuse a bad directory before touching AWS
        backend = connect(stack, project_dir, bucket, table)
        release.refuse_if_published(backend, name, version)
        directory, origin = Path(source), (str(Path(source).resolve()), None)
        if revision is not None:
            directory, resolved = _download(source, revision)
            origin = (f"hf://{source}", resolved)
        files, skipped = scan_model_dir(directory)
        if skipped:
            errors.print(f"not uploaded (not safetensors weights): {', '.join(skipped)}", style="yellow")
        with progress_bars() as phase:
            done = release.publish(backend, files, name, version, stack, origin, phase=phase)
        console.print(
            f"published {name} {version}: {len(done.upload.uploaded)} uploaded, {len(done.upload.skipped)} already "
            f"there, {done.manifest.total_bytes} bytes, s3://{backend.bucket}/{version_prefix(name, version)}"
        )


@app.command("list")
def list_versions(
    stack: Stack,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Only this model.")] = None,
    project_dir: ProjectDir = Path("."),
    bucket: Bucket = None,
    table: TableName = None,
) -> None:
    """Published versions (those with a manifest and a registry item) and their status on the stack."""
    with handled():
        check_inputs(stack, project_dir, name)
        backend = connect(stack, project_dir, bucket, table)
        grid = Table(title=f"Model versions ({stack})")
        for column in ("model", "version", f"on {stack}", "files", "bytes", "created", "by"):
            grid.add_column(column)
        for row in backend.registry.versions(name):
            item = row.item
            status = row.status(stack)
            grid.add_row(
                item["model"], item["version"], f"[bold]{status}[/]" if status == ACTIVE else status,
                str(item["files"]), str(item["bytes"]), item["createdAt"], item["createdBy"],
            )
        console.print(grid)


@app.command()
def show(
    name: Name, version: Version, stack: Stack, project_dir: ProjectDir = Path("."),
    bucket: Bucket = None, table: TableName = None,
) -> None:
    """A version's registry item, its files from the manifest, and its history."""
    with handled():
        check_inputs(stack, project_dir, name, version)
        backend = connect(stack, project_dir, bucket, table)
        row = backend.registry.require(name, version)
        item = row.item
        console.print(f"{name} {version}: s3://{backend.bucket}/{item['prefix']}", markup=False)
        for key in ("source", "revision", "createdBy", "createdAt", "manifestSha256", "files", "bytes"):
            if key in item:
                console.print(f"  {key}: {item[key]}", markup=False)
        console.print("  status: " + ", ".join(f"{s}={status}" for s, status in sorted(item["stacks"].items())))
        body = release.store.read_manifest(backend.s3, backend.bucket, item["prefix"])
        if body:
            for entry in release.Manifest.from_bytes(body).files:
                console.print(f"  {entry.sha256}  {entry.size:>14}  {entry.path}", markup=False)
        for event in item.get("history", []):
            console.print(f"  {event['at']}  {event['action']} {event['stack']}  by {event['by']}", markup=False)


@app.command()
def verify(
    name: Name, version: Version, stack: Stack,
    deep: Annotated[bool, typer.Option("--deep", help="Also download every object and re-hash it.")] = False,
    project_dir: ProjectDir = Path("."), bucket: Bucket = None, table: TableName = None,
) -> None:
    """Compare the objects in S3 with the version's manifest; exit 1 on any missing or different file."""
    with handled():
        check_inputs(stack, project_dir, name, version)
        backend = connect(stack, project_dir, bucket, table)
        with progress_bars() as phase:
            problems = release.verify(backend, name, version, deep, phase)
        for problem in problems:
            errors.print(f"mismatch: {problem}", markup=False)
        if problems:
            raise Failed(f"{name} {version}: {len(problems)} problem(s) against {MANIFEST_NAME}")
        how = " (content re-hashed)" if deep else " (size and stored sha256; --deep re-hashes)"
        console.print(f"{name} {version}: every file matches {MANIFEST_NAME}{how}")


def _report(switched: release.Switched, stack: str, project_dir: Path) -> None:
    was = f" (was {switched.replaced})" if switched.replaced else ""
    console.print(f"{stack}: {switched.active} is active{was}", markup=False)
    change = "updated" if switched.file_changed else "already set in"
    prefix = version_prefix(switched.active.name, switched.active.version)
    console.print(f"{change} {switched.stack_file}: serving.vllm.model {prefix}", markup=False)
    if switched.config.serving.vllm.served_model_name is None:
        errors.print(
            "note: serving.vllm.servedModelName is unset, so clients must call the model by its prefix; set it once "
            "in the stack file to keep the name clients use stable across versions", style="yellow",
        )
    cwd = "" if project_dir == Path(".") else f" --cwd {project_dir}"
    console.print(f"now run: pulumi up -s {stack}{cwd}", markup=False)


@app.command()
def promote(
    name: Name, version: Version, stack: Stack, project_dir: ProjectDir = Path("."),
    bucket: Bucket = None, table: TableName = None,
) -> None:
    """Make a version the stack's active one and point serving.vllm at it in Pulumi.<stack>.yaml."""
    with handled():
        check_inputs(stack, project_dir, name, version)
        backend = connect(stack, project_dir, bucket, table)
        _report(release.promote(backend, project_dir, stack, name, version), stack, project_dir)


@app.command()
def rollback(
    stack: Stack, project_dir: ProjectDir = Path("."), bucket: Bucket = None, table: TableName = None
) -> None:
    """Go back to the version the stack's active one replaced."""
    with handled():
        check_inputs(stack, project_dir)
        backend = connect(stack, project_dir, bucket, table)
        _report(release.rollback(backend, project_dir, stack), stack, project_dir)


@app.command()
def retire(
    name: Name, version: Version, stack: Stack, project_dir: ProjectDir = Path("."),
    bucket: Bucket = None, table: TableName = None,
) -> None:
    """Mark a version retired on the stack: it can no longer be promoted or rolled back to. Objects are kept."""
    with handled():
        check_inputs(stack, project_dir, name, version)
        backend = connect(stack, project_dir, bucket, table)
        backend.registry.retire(backend.registry.require(name, version), stack)
        console.print(f"{name} {version} retired on {stack}; its objects stay in s3://{backend.bucket}", markup=False)
