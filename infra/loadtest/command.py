"""The `llm-platform loadtest` command: options checked here, the run in a child process (gevent)."""

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer


def loadtest(
    url: Annotated[str, typer.Option("--url", help="The gateway's base URL, e.g. https://llm.example.com.")],
    key_env: Annotated[str, typer.Option("--key-env", help="Environment variable holding the API key to use.")],
    profile: Annotated[
        str, typer.Option("--profile", help="seed000 (1,000 users), seed002 (autoscaling check) or a YAML file.")
    ] = "seed002",
    prometheus_url: Annotated[
        str | None,
        typer.Option("--prometheus-url", help="Prometheus to read vLLM replicas from (e.g. a port-forward)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model to request; default: the gateway's first.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for loadtest.md and loadtest.svg.")] = Path("loadtest"),
) -> None:
    """Drive the gateway through a profile's stages (ramp, steady, drop); report latency, errors and replicas.
    Exit code 1 when an acceptance check fails (e.g. a dropped request), 2 for bad options."""
    argv = [sys.executable, "-m", "infra.loadtest", "--url", url, "--key-env", key_env, "--profile", profile,
            "--out", str(out)]
    argv += ["--prometheus-url", prometheus_url] if prometheus_url else []
    argv += ["--model", model] if model else []
    raise typer.Exit(code=subprocess.run(argv, check=False).returncode)
