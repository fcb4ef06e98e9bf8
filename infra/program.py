"""The program body shared by `pulumi up` and the offline preview."""

import pulumi
from pulumi.runtime import config as runtime_config

from stacks.loader import load_from_engine
from stacks.placeholders import refuse_placeholders
from stacks.platform import build_platform


def engine_config() -> dict[str, object]:
    """All configuration the engine handed this program, whichever way it was passed."""
    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


def run(project: str, stack: str, offline: bool = False) -> None:
    """`offline` is set by the offline engine only: it accepts the stack files' example values (and lists them),
    where a real `pulumi preview`/`up` refuses them. `pulumi.runtime.is_dry_run()` cannot tell the two apart."""
    config = load_from_engine(stack, engine_config())
    if not offline:
        refuse_placeholders(config, f"stack {stack}")
    for name, value in build_platform(config, project, stack).items():
        pulumi.export(name, value)
