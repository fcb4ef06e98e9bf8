"""`python -m infra.loadtest`: what `llm-platform loadtest` runs in a child process (see __init__)."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - after monkey-patching, as gevent requires
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from infra.loadtest.profiles import ProfileError, load_profile  # noqa: E402
from infra.loadtest.report import write_report  # noqa: E402
from infra.loadtest.runner import run, served_model  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="llm-platform loadtest")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key-env", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--model")
    parser.add_argument("--prometheus-url")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.key_env)
    if not api_key:
        print(f"--key-env {args.key_env}: the environment variable is not set", file=sys.stderr)
        return 2
    try:
        profile = load_profile(args.profile)
    except ProfileError as error:
        print(error, file=sys.stderr)
        return 2
    model = args.model or served_model(args.url, api_key)
    result = run(args.url, api_key, model, profile, args.prometheus_url)
    report = write_report(result, args.out)
    verdict = "PASS" if result.passed else "FAIL"
    print(f"{verdict}: {result.requests} requests, {result.failures} failed; report {report}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
