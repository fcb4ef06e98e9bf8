"""`python -m serving.simulator`: run the vLLM simulator (dev, tests, benchmarks only)."""

from __future__ import annotations

import argparse
import os
import time

import uvicorn

from serving.simulator.app import Settings


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m serving.simulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=Settings.model, help="served model name")
    p.add_argument("--max-model-len", type=int, default=Settings.max_model_len, help="context window in tokens")
    p.add_argument("--ttft-ms", type=float, default=0.0, help="time to first token")
    p.add_argument("--itl-ms", type=float, default=0.0, help="time per further output token")
    p.add_argument(
        "--output-tokens", type=int, default=Settings.output_tokens, help="tokens per answer (max_tokens caps it)"
    )
    p.add_argument("--max-concurrency", type=int, default=0, help="running per worker, others wait (0: no limit)")
    p.add_argument("--stream-error-after", type=int, default=-1, help="tokens, then vLLM's in-band error event")
    p.add_argument("--stream-drop-after", type=int, default=-1, help="tokens, then the connection drops mid-stream")
    p.add_argument("--startup-delay-s", type=float, default=0.0, help="sleep before binding the port (model loading)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    settings = Settings(
        model=args.model,
        max_model_len=args.max_model_len,
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        output_tokens=args.output_tokens,
        max_concurrency=args.max_concurrency,
        stream_error_after=args.stream_error_after,
        stream_drop_after=args.stream_drop_after,
    )
    # Through the environment so that every uvicorn worker process builds the same app.
    os.environ.update(settings.to_env())
    if args.startup_delay_s > 0:
        time.sleep(args.startup_delay_s)
    uvicorn.run(
        "serving.simulator.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        log_level=args.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
