"""`python -m serving.bench`: throughput and latency of the upstream directly, our gateway and LiteLLM's proxy.

All three run against the same fast simulator (`--ttft-ms 0 --itl-ms 0`) with the same worker count, in one run
on one machine. Results go into the markdown file between the result markers, and as JSON next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from serving import processes
from serving.bench.load import Result, closed_loop, open_loop, run
from serving.processes import ManagedProcess

MODEL = "bench/model"
API_KEY = "sk-bench-key"
LITELLM_VERSION = "1.83.4"  # pinned so reruns compare like with like
BENCH_DIR = Path(".bench")
BEGIN, END = "<!-- bench:results -->", "<!-- /bench:results -->"
STARTUP_TIMEOUT_S = 180  # LiteLLM's proxy takes tens of seconds to import on a busy machine


def _body(stream: bool, temperature: float) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Summarise the benchmark in one sentence."}],
            "max_tokens": 16,
            "temperature": temperature,
            "stream": stream,
        }
    )


def litellm_venv() -> Path:
    """A separate venv, so LiteLLM's many pins never touch the project's environment."""
    venv = BENCH_DIR / "litellm-venv"
    exe = venv / "bin" / "litellm"
    marker = venv / f".litellm-{LITELLM_VERSION}"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"]
        subprocess.run(pip, check=True)
        marker.touch()
    return exe


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def gateway_command(
    upstream: str, redis_url: str, keys: Path, port: int, workers: int, settings: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The gateway under test: only what a deployment sets per site (addresses, keys, models, workers) is given;
    every other setting is the shared default the stack deploys (serving/gateway/defaults.py), logging included,
    unless `settings` changes it."""
    argv = _python(
        "serving.gateway",
        *("--port", str(port), "--upstream", upstream, "--redis", redis_url),
        *("--api-keys-file", str(keys), "--workers", str(workers)),
    )
    return argv, {"GATEWAY_MODELS": f"{MODEL}=4096", **(settings or {})}


@contextlib.contextmanager
def start_gateway(
    upstream: str, workers: int, tmp: Path, settings: dict[str, str] | None = None
) -> Iterator[ManagedProcess]:
    keys = tmp / "keys.json"
    # Limits on, high enough never to refuse: every request still goes through the leases.
    entry = {"id": "bench", "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "rpm": 10**9, "tpm": 10**12}
    keys.write_text(json.dumps({"keys": [entry]}))
    with processes.start_redis(processes.free_port()) as redis:
        port = processes.free_port()
        argv, env = gateway_command(upstream, f"redis://127.0.0.1:{redis.port}/0", keys, port, workers, settings)
        with processes.start(argv, port, env=env, ready_path="/ready", timeout=STARTUP_TIMEOUT_S) as gateway:
            yield gateway


@contextlib.contextmanager
def start_litellm(upstream: str, workers: int, tmp: Path) -> Iterator[ManagedProcess]:
    config = tmp / "litellm.yaml"
    # No database and no callbacks: what remains is routing, auth with a master key (our gateway authenticates
    # too) and LiteLLM's own request handling.
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {"model": f"openai/{MODEL}", "api_base": upstream + "/v1", "api_key": "x"},
                    }
                ],
                "general_settings": {"master_key": API_KEY},
                "litellm_settings": {"telemetry": False, "drop_params": True},
            }
        )
    )
    port = processes.free_port()
    argv = [str(litellm_venv()), "--config", str(config), "--port", str(port), "--num_workers", str(workers)]
    env = {"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TELEMETRY": "False"}
    with processes.start(argv, port, env=env, ready_path="/health/liveliness", timeout=STARTUP_TIMEOUT_S) as proxy:
        yield proxy


HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
ROUNDS = 5


def _endpoint(url: str) -> str:
    return url + "/v1/chat/completions"


def measure(targets: dict[str, str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Saturation of each target in turn, then latency of all of them in alternating rounds (see open_loop); the
    gateway's cache hit joins the non-streaming rounds."""
    out: dict[str, dict[str, Any]] = {name: {} for name in targets}
    for mode in ("plain", "stream"):
        body = _body(mode == "stream", 1.0)
        saturation = {}
        for name, url in targets.items():
            print(f"{name} {mode}: measuring", file=sys.stderr)
            run(closed_loop(_endpoint(url), body, HEADERS, args.concurrency, 1))  # warm-up: connections, caches
            saturation[name] = run(closed_loop(_endpoint(url), body, HEADERS, args.concurrency, args.duration))
        cases = [(name, mode, _endpoint(url), body) for name, url in targets.items()]
        if mode == "plain" and "gateway" in targets:
            hit = _body(False, 0.0)  # deterministic, so the gateway caches it after the first request
            run(closed_loop(_endpoint(targets["gateway"]), hit, HEADERS, 4, 1))
            cases.append(("gateway", "cache_hit", _endpoint(targets["gateway"]), hit))
        at_rate = run(open_loop([(url, b) for _, _, url, b in cases], HEADERS, args.rate, args.duration, ROUNDS))
        for (name, case, _, _), result in zip(cases, at_rate, strict=True):
            out[name][case] = _summary(saturation[name] if case == mode else None, result)
    return out


def _summary(saturation: Result | None, at_rate: Result) -> dict[str, Any]:
    return {
        "rps": round(saturation.rps, 1) if saturation else None,
        "saturation_errors": saturation.errors if saturation else None,
        "p50_ms": _round(at_rate.percentile(50)),
        "p99_ms": _round(at_rate.percentile(99)),
        "rate_errors": at_rate.errors,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _not_measured(name: str, error: Exception) -> dict[str, Any]:
    print(f"{name}: not measured: {error}", file=sys.stderr)
    return {"error": str(error).strip().splitlines()[-1]}


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    versions = {pkg: metadata.version(pkg) for pkg in ("uvicorn", "uvloop", "httptools", "hiredis")}
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "litellm": LITELLM_VERSION,
        "load_1m_at_start": round(os.getloadavg()[0], 2),
        "speed_check_ms": _speed_check_ms(),
        **versions,
    }


def _speed_check_ms() -> float:
    """A fixed pure-Python loop, best of 5. This VM's speed changed over 2x between runs hours apart with nothing
    else running inside it (a busy host), which neither load average nor steal shows: absolute figures of two runs
    compare only together with this."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        sum(range(10**7))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def _cpu_ticks() -> tuple[int, int]:
    """(steal, total) ticks of all CPUs so far: steal is time the hypervisor gave these vCPUs to other guests,
    which no quiet check inside the machine can see."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return fields[7], sum(fields)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value}"


def markdown(results: dict[str, Any], info: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, uvicorn {info['uvicorn']}, "
        f"LiteLLM {info['litellm']}. Workers per server: {args.workers}. Saturation: {args.concurrency} "
        f"concurrent clients for {args.duration:g} s; latency: open loop at {args.rate:g} requests/s for "
        f"{args.duration:g} s, in {ROUNDS} turns per target. Load average at start {info['load_1m_at_start']}, "
        f"CPU steal during the run {info['cpu_steal_pct']}%, speed check (`sum(range(10**7))`, best of 5) "
        f"{info['speed_check_ms']} ms.",
        "",
        "| target | mode | throughput at saturation (req/s) | p50 ms | p99 ms | overhead p50 / p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    direct = results.get("direct", {})
    for target in ("direct", "gateway", "litellm"):
        res = results.get(target, {})
        if "error" in res:
            lines.append(f"| {target} | - | not measured: {res['error']} | | | | |")
            continue
        for mode in ("plain", "stream", "cache_hit"):
            row = res.get(mode)
            if not row:
                continue
            base = direct.get("plain" if mode == "cache_hit" else mode, {})
            overhead = "-"
            if target != "direct" and row["p50_ms"] is not None and base.get("p50_ms") is not None:
                overhead = f"{row['p50_ms'] - base['p50_ms']:+.2f} / {row['p99_ms'] - base['p99_ms']:+.2f}"
            errors = (row["saturation_errors"] or 0) + row["rate_errors"]
            lines.append(
                f"| {target} | {mode} | {_fmt(row['rps'])} | {_fmt(row['p50_ms'])} | {_fmt(row['p99_ms'])} "
                f"| {overhead} | {errors} |"
            )
    gw, ll = results.get("gateway", {}), results.get("litellm", {})
    for mode in ("plain", "stream"):
        if gw.get(mode) and ll.get(mode) and ll[mode]["rps"]:
            lines.append("")
            lines.append(f"Gateway / LiteLLM throughput ({mode}): {gw[mode]['rps'] / ll[mode]['rps']:.1f}x")
    return "\n".join(lines)


def write_report(out: Path, table: str, results: dict[str, Any]) -> None:
    block = f"{BEGIN}\n{table}\n{END}"
    text = out.read_text() if out.exists() else f"# Gateway benchmark\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text += "\n" + block + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")


def _gateway_setting(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition("=")
    if not sep or not name.startswith("GATEWAY_"):
        raise argparse.ArgumentTypeError(f"{raw!r} is not GATEWAY_NAME=VALUE (see python -m serving.gateway --help)")
    return name, value


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m serving.bench", description=__doc__)
    p.add_argument("--workers", type=int, default=1, help="worker processes for the gateway, LiteLLM and simulator")
    p.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    p.add_argument("--rate", type=float, default=200, help="requests/s of the latency measurement")
    p.add_argument("--concurrency", type=int, default=64, help="clients of the saturation measurement")
    p.add_argument(
        "--gateway-setting",
        type=_gateway_setting,
        action="append",
        default=[],
        metavar="GATEWAY_NAME=VALUE",
        help="run the gateway with this setting (repeatable), e.g. GATEWAY_RATE_LIMIT_LEASE_PERCENT=0",
    )
    p.add_argument("--skip-litellm", action="store_true")
    p.add_argument("--skip-gateway", action="store_true")
    p.add_argument("--out", type=Path, default=Path("docs/gateway-benchmark.md"))
    args = p.parse_args(argv)
    command = shlex.join(["python", "-m", "serving.bench", *(sys.argv[1:] if argv is None else argv)])
    info = machine()
    steal_before, total_before = _cpu_ticks()
    results: dict[str, Any] = {"machine": info, "workers": args.workers, "command": command}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        port = processes.free_port()
        sim_argv = _python(
            "serving.simulator",
            *("--port", str(port), "--model", MODEL, "--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "16"),
            *("--max-model-len", "4096", "--workers", str(args.workers)),
        )
        with processes.start(sim_argv, port) as sim:
            # The direct upstream and the gateway take turns in the same rounds: their difference is the overhead.
            targets = {"direct": sim.url}
            with contextlib.ExitStack() as stack:
                if not args.skip_gateway:
                    try:
                        gateway = start_gateway(sim.url, args.workers, tmp, dict(args.gateway_setting))
                        targets["gateway"] = stack.enter_context(gateway).url
                    except processes.ProcessError as e:
                        results["gateway"] = _not_measured("gateway", e)
                results.update(measure(targets, args))
            # LiteLLM last, in turns of its own: it is not part of the overhead comparison, and its streaming backlog at
            # this rate (it keeps up with about 70 requests/s) would hold up the turns of the others.
            if not args.skip_litellm:
                try:
                    with start_litellm(sim.url, args.workers, tmp) as proxy:
                        results.update(measure({"litellm": proxy.url}, args))
                except (processes.ProcessError, subprocess.CalledProcessError) as e:
                    results["litellm"] = _not_measured("litellm", e)
    steal_after, total_after = _cpu_ticks()
    info["cpu_steal_pct"] = round(100 * (steal_after - steal_before) / max(1, total_after - total_before), 1)
    table = markdown(results, info, args, command)
    write_report(args.out, table, results)
    print(table)


if __name__ == "__main__":
    main()
