"""Publishing a model version: files and a MANIFEST.json in the bucket, the registry item after it; re-runs resume;
published versions and bad inputs are refused with exit 2 and nothing changed."""

import hashlib
import json
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from typer.testing import CliRunner

from infra.models import release
from infra.models.cli import app
from infra.models.errors import Refused

from .conftest import BUCKET, Aws, Calls, cli_args, local_files, make_model, refusal

runner = CliRunner()
PREFIX = "models/qwen-test/1.0.0/"
SOURCE = ("local", None)
PUTS = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_files(directory: Path) -> dict[str, Path]:
    return {path.name: path for path in directory.iterdir() if path.is_file()}


def publish_cli(model: Path, project: Path, version: str = "1.0.0", *extra: str):  # type: ignore[no-untyped-def]
    return runner.invoke(
        app,
        ["publish", str(model), "--name", "qwen-test", "--version", version, "--stack", "dev", *cli_args(project),
         *extra],
    )


def test_publish_then_list_show_verify(aws: Aws, model: Path, project: Path) -> None:
    result = publish_cli(model, project)
    assert result.exit_code == 0, result.output
    files = model_files(model)
    assert sorted(aws.object_keys()) == sorted([PREFIX + name for name in files] + [PREFIX + "MANIFEST.json"])

    manifest = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=PREFIX + "MANIFEST.json")["Body"].read())
    assert {entry["path"]: entry["sha256"] for entry in manifest["files"]} == {n: sha256(p) for n, p in files.items()}
    assert manifest["totalBytes"] == sum(path.stat().st_size for path in files.values())
    (item,) = aws.items()
    assert (item["model"], item["version"], item["stacks"], item["prefix"]) == (
        "qwen-test", "1.0.0", {"dev": "staged"}, PREFIX
    )
    body = aws.s3.get_object(Bucket=BUCKET, Key=PREFIX + "MANIFEST.json")["Body"].read()
    assert item["manifestSha256"] == hashlib.sha256(body).hexdigest()

    listed = runner.invoke(app, ["list", "--stack", "dev", *cli_args(project)])
    assert listed.exit_code == 0 and "qwen-test" in listed.stdout and "staged" in listed.stdout, listed.output
    shown = runner.invoke(app, ["show", "-n", "qwen-test", "-v", "1.0.0", "-s", "dev", *cli_args(project)])
    assert shown.exit_code == 0, shown.output
    assert sha256(files["model-00001-of-00002.safetensors"]) in shown.stdout
    assert "published dev" in shown.stdout
    verified = runner.invoke(
        app, ["verify", "-n", "qwen-test", "-v", "1.0.0", "-s", "dev", "--deep", *cli_args(project)]
    )
    assert verified.exit_code == 0, verified.output


def test_hidden_files_and_pickle_weights_stay_local(aws: Aws, model: Path) -> None:
    (model / ".cache").mkdir()
    (model / ".cache" / "download.lock").write_text("x")
    (model / "pytorch_model.bin").write_bytes(b"pickle")
    release.publish(aws.backend(), local_files(model), "qwen-test", "1.0.0", "dev", SOURCE)
    keys = {key.removeprefix(PREFIX) for key in aws.object_keys()}
    assert "pytorch_model.bin" not in keys and not any(key.startswith(".cache") for key in keys)


def test_manifest_is_written_after_every_file_and_the_registry_after_it(aws: Aws, model: Path) -> None:
    calls = Calls(aws.s3)
    seen_rows_at_manifest: list[int] = []
    aws.s3.meta.events.register(
        "before-parameter-build.s3.PutObject",
        lambda params, **_: seen_rows_at_manifest.append(len(aws.items()))
        if params["Key"].endswith("MANIFEST.json") else None,
    )
    release.publish(aws.backend(), local_files(model), "qwen-test", "1.0.0", "dev", SOURCE)
    uploads = [key for name, key in zip(calls.names, calls.keys, strict=True) if name == "PutObject"]
    assert uploads[-1] == PREFIX + "MANIFEST.json"
    assert len(uploads) == len(model_files(model)) + 1
    assert seen_rows_at_manifest == [0], "the registry item must not exist before the manifest"
    assert len(aws.items()) == 1


def test_large_files_go_up_in_parts_and_hash_whole(aws: Aws, tmp_path: Path) -> None:
    model = make_model(tmp_path / "big", shards=1, values=(11 * 1024 * 1024) // 4)  # one 11 MiB shard
    calls = Calls(aws.s3)
    # S3's smallest part is 5 MiB: 11 MiB in 5 MiB parts is 3 parts.
    transfer = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    release.publish(aws.backend(), local_files(model), "qwen-test", "1.0.0", "dev", SOURCE, transfer)
    assert calls.count("CreateMultipartUpload") == 1
    assert calls.count("UploadPart") == 3
    assert release.verify(aws.backend(), "qwen-test", "1.0.0", deep=True) == []


def test_interrupted_publish_is_not_listed_and_a_rerun_uploads_only_the_rest(aws: Aws, model: Path) -> None:
    files = local_files(model)
    puts: list[str] = []

    def fail_on_third_upload(params: dict, **_: object) -> None:
        puts.append(params["Key"])
        if len(puts) == 3:
            raise ConnectionError("network went away")

    handler_id = "fail"
    aws.s3.meta.events.register("before-parameter-build.s3.PutObject", fail_on_third_upload, unique_id=handler_id)
    with pytest.raises(ConnectionError):
        release.publish(aws.backend(), files, "qwen-test", "1.0.0", "dev", SOURCE)
    aws.s3.meta.events.unregister("before-parameter-build.s3.PutObject", unique_id=handler_id)

    assert len(aws.object_keys()) == 2 and PREFIX + "MANIFEST.json" not in aws.object_keys()
    assert aws.backend().registry.versions() == []

    calls = Calls(aws.s3)
    done = release.publish(aws.backend(), files, "qwen-test", "1.0.0", "dev", SOURCE)
    assert len(done.upload.skipped) == 2
    assert calls.count(*PUTS) == len(files) - 2 + 1  # the three files not finished, then the manifest
    assert [row.ref.version for row in aws.backend().registry.versions()] == ["1.0.0"]
    assert release.verify(aws.backend(), "qwen-test", "1.0.0", deep=True) == []


def test_a_changed_file_is_uploaded_again_on_rerun(aws: Aws, model: Path) -> None:
    """Same name, same size, other bytes: the stored hash tells them apart."""
    files = local_files(model)
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + "config.json", Body=(model / "config.json").read_bytes())
    calls = Calls(aws.s3)
    release.publish(aws.backend(), files, "qwen-test", "1.0.0", "dev", SOURCE)
    assert calls.keys.count(PREFIX + "config.json") == 2  # the HEAD, then the upload


def test_publish_refuses_a_published_version(aws: Aws, model: Path, project: Path) -> None:
    assert publish_cli(model, project).exit_code == 0
    before = {key: aws.s3.head_object(Bucket=BUCKET, Key=key)["ETag"] for key in aws.object_keys()}
    other = make_model(model.parent / "other", seed=7)
    calls = Calls(aws.s3)
    result = publish_cli(other, project)
    assert result.exit_code == 2
    assert "already published" in refusal(result)
    assert {key: aws.s3.head_object(Bucket=BUCKET, Key=key)["ETag"] for key in aws.object_keys()} == before
    assert calls.count(*PUTS) == 0


def test_a_leftover_manifest_of_other_files_is_not_overwritten(aws: Aws, model: Path) -> None:
    release.publish(aws.backend(), local_files(model), "qwen-test", "1.0.0", "dev", SOURCE)
    aws.table.delete_item(Key={"model": "qwen-test", "version": "1.0.0"})
    other = make_model(model.parent / "other", seed=7)
    with pytest.raises(Refused, match=r"MANIFEST\.json for other files"):
        release.publish(aws.backend(), local_files(other), "qwen-test", "1.0.0", "dev", SOURCE)


def test_a_manifest_written_before_a_crash_is_registered_on_rerun(aws: Aws, model: Path) -> None:
    release.publish(aws.backend(), local_files(model), "qwen-test", "1.0.0", "dev", SOURCE)
    aws.table.delete_item(Key={"model": "qwen-test", "version": "1.0.0"})
    calls = Calls(aws.s3)
    release.publish(aws.backend(), local_files(model), "qwen-test", "1.0.0", "dev", SOURCE)
    assert calls.count(*PUTS) == 0
    assert release.verify(aws.backend(), "qwen-test", "1.0.0", deep=False) == []


def _empty(path: Path) -> Path:
    path.mkdir()
    return path


def _no_safetensors(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "pytorch_model.bin").write_bytes(b"weights")
    return path


@pytest.mark.parametrize(
    ("case", "args", "message"),
    [
        ("missing dir", lambda tmp, model: [str(tmp / "nope"), "-n", "qwen-test", "-v", "1.0.0", "-s", "dev"],
         "no such directory"),
        ("empty dir", lambda tmp, model: [str(_empty(tmp / "e")), "-n", "qwen-test", "-v", "1.0.0", "-s", "dev"],
         "empty directory"),
        ("no safetensors",
         lambda tmp, model: [str(_no_safetensors(tmp / "b")), "-n", "qwen-test", "-v", "1.0.0", "-s", "dev"],
         "no *.safetensors"),
        ("bad version", lambda tmp, model: [str(model), "-n", "qwen-test", "-v", "v1", "-s", "dev"], "--version 'v1'"),
        ("bad name", lambda tmp, model: [str(model), "-n", "Qwen/7B", "-v", "1.0.0", "-s", "dev"], "--name 'Qwen/7B'"),
        ("unknown stack", lambda tmp, model: [str(model), "-n", "qwen-test", "-v", "1.0.0", "-s", "staging"],
         "unknown stack 'staging'"),
    ],
)
def test_bad_publish_inputs_exit_2_with_one_line_and_change_nothing(
    aws: Aws, model: Path, project: Path, tmp_path: Path, case: str, args, message: str  # type: ignore[no-untyped-def]
) -> None:
    stack_files = {path.name: path.read_bytes() for path in project.iterdir()}
    result = runner.invoke(app, ["publish", *args(tmp_path, model), *cli_args(project)])
    assert result.exit_code == 2, (case, result.output)
    assert message in refusal(result), case
    assert aws.object_keys() == [] and aws.items() == []
    assert {path.name: path.read_bytes() for path in project.iterdir()} == stack_files


def test_a_hugging_face_source_is_downloaded_at_its_revision(
    aws: Aws, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hub: a stand-in for snapshot_download answers with a cache folder named after the resolved commit."""
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    calls: list[tuple[str, dict]] = []

    def snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append((repo_id, kwargs))
        return str(make_model(tmp_path / "hub" / "snapshots" / commit))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    result = publish_cli(Path("Qwen/Qwen2.5-7B-Instruct"), project, "1.0.0", "--revision", "main")
    assert result.exit_code == 0, result.output
    ((repo_id, kwargs),) = calls
    assert repo_id == "Qwen/Qwen2.5-7B-Instruct" and kwargs["revision"] == "main"
    assert "*.safetensors" in kwargs["allow_patterns"] and "*.bin" not in kwargs["allow_patterns"]
    manifest = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=PREFIX + "MANIFEST.json")["Body"].read())
    assert (manifest["source"], manifest["revision"]) == ("hf://Qwen/Qwen2.5-7B-Instruct", commit)


def test_a_multipart_upload_cut_between_parts_leaves_no_object_and_resumes(aws: Aws, tmp_path: Path) -> None:
    model = make_model(tmp_path / "big", shards=1, values=(11 * 1024 * 1024) // 4)
    transfer = TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024, max_concurrency=1
    )
    parts: list[int] = []

    def fail_on_second_part(params: dict, **_: object) -> None:
        parts.append(params["PartNumber"])
        if len(parts) == 2:
            raise ConnectionError("network went away")

    aws.s3.meta.events.register("before-parameter-build.s3.UploadPart", fail_on_second_part, unique_id="cut")
    with pytest.raises(ConnectionError):
        release.publish(aws.backend(), local_files(model), "qwen-test", "1.0.0", "dev", SOURCE, transfer)
    aws.s3.meta.events.unregister("before-parameter-build.s3.UploadPart", unique_id="cut")

    shard = PREFIX + "model-00001-of-00001.safetensors"
    assert shard not in aws.object_keys() and PREFIX + "MANIFEST.json" not in aws.object_keys()
    assert aws.backend().registry.versions() == []
    release.publish(aws.backend(), local_files(model), "qwen-test", "1.0.0", "dev", SOURCE, transfer)
    assert release.verify(aws.backend(), "qwen-test", "1.0.0", deep=True) == []
