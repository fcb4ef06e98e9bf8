"""Set keys of a stack's `llm-platform:` configuration in `Pulumi.<stack>.yaml`, every other byte of the file
(comments, order, quoting) kept: the one writer of the commands that change a stack's configuration (`models
promote`, `images snapshot`).

The edit is written to a temporary file beside the stack file, validated there by the project's own loader, and
only then renamed over it (atomic on POSIX), so a bad edit never reaches the stack.
"""

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from infra.models.errors import Refused
from stacks.config import PlatformConfig
from stacks.loader import NAMESPACE, ConfigError, read_stack_file, stack_file, validate

# A key under the namespace as its path: ("serving", "vllm", "model") is llm-platform:serving / vllm / model.
KeyPath = tuple[str, ...]
Settings = dict[KeyPath, Any]


def _yaml() -> YAML:
    yaml = YAML()  # round-trip mode
    yaml.preserve_quotes = True
    # The layout of this project's stack files: 2-space mappings, list dashes indented 2 under their key.
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def _mapping(parent: Any, key: str) -> Any:
    if parent.get(key) is None:
        parent[key] = CommentedMap()
    return parent[key]


def edited_text(text: str, settings: Settings) -> str:
    yaml = _yaml()
    document = yaml.load(text) or CommentedMap()
    config = _mapping(document, "config")
    for path, value in settings.items():
        first, *middle, last = path
        parent = _mapping(config, f"{NAMESPACE}:{first}")
        for key in middle:
            parent = _mapping(parent, key)
        parent[last] = value
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


@dataclass(frozen=True)
class StackFileEdit:
    path: Path
    staged: Path | None  # None: the file already says this
    config: PlatformConfig

    def commit(self) -> None:
        if self.staged:
            os.replace(self.staged, self.path)

    def discard(self) -> None:
        if self.staged:
            self.staged.unlink(missing_ok=True)


def existing_stack_file(project_dir: Path, stack: str) -> Path:
    path = stack_file(project_dir, stack)
    if not path.is_file():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in project_dir.glob("Pulumi.*.yaml"))
        here = ", ".join(known) or "none"
        raise Refused(f"unknown stack {stack!r}: no {path.name} in {project_dir} (stacks here: {here})")
    return path


def prepare(project_dir: Path, stack: str, settings: Settings) -> StackFileEdit:
    """Write the edited file beside the stack file and validate it; `commit()` puts it in place."""
    path = existing_stack_file(project_dir, stack)
    original = path.read_text()
    text = edited_text(original, settings)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with staged.open("w") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())  # on disk before the rename makes it the stack file
    shutil.copymode(path, staged)
    try:
        config = validate(stack, read_stack_file(staged), path.name)
    except ConfigError as error:
        staged.unlink()
        raise Refused(" / ".join(str(error).splitlines())) from None
    if text == original:
        staged.unlink()
        return StackFileEdit(path, None, config)
    return StackFileEdit(path, staged, config)
