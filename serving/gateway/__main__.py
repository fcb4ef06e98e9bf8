"""`python -m serving.gateway [flags]` runs the gateway; `python -m serving.gateway hash-key` hashes a key."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import uvicorn

from .keys import hash_key, load_keys
from .settings import parse


def main(argv: list[str]) -> None:
    if argv[:1] == ["hash-key"]:
        key = sys.stdin.readline().strip()
        if not key:
            sys.exit("hash-key: no key on stdin")
        print(f'{{"id": "CHANGE-ME", "sha256": "{hash_key(key)}"}}')
        return
    settings = parse(argv, os.environ)
    try:
        load_keys(settings.api_keys_file, settings.rate_limit_rpm, settings.rate_limit_tpm)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"--api-keys-file / GATEWAY_API_KEYS_FILE: cannot load {settings.api_keys_file}: {exc}\n")
        sys.exit(2)
    # Workers are separate processes that build the app from the environment, so export the resolved settings.
    os.environ.update(settings.to_env())
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-", dir="/tmp")
    uvicorn.run(
        "serving.gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        # The app drains in-flight requests itself before uvicorn's shutdown starts; this only bounds the rest.
        timeout_graceful_shutdown=5,
        # Longer than any ALB idle timeout the stack allows (<= 4000 s): the ALB, not the gateway, must close idle
        # connections, or a request racing the close gets a 502.
        timeout_keep_alive=4100,
    )
    if metrics_dir is not None:
        shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
