#!/usr/bin/env bash
# The project's two entry points, on a fresh machine with Python 3.11+ and apt:
#   ./tasks.sh preview [--stack prod] [--json FILE] ...   offline preview of a stack (default: dev)
#   ./tasks.sh test                                       lint, type-check and the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed

setup() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "llm-platform needs Python 3.11 or newer (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
        "$VENV/bin/pip" install --quiet --upgrade pip
        "$VENV/bin/pip" install --quiet -e '.[dev]'
        touch "$STAMP"
    fi
}

os_packages() {
    # The gateway's tests run a real Redis; the alerting tests run promtool and amtool (Debian's prometheus and
    # prometheus-alertmanager packages).
    command -v redis-server >/dev/null && command -v promtool >/dev/null && command -v amtool >/dev/null && return
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        redis-server prometheus prometheus-alertmanager >/dev/null
    # Tests start their own servers on free ports; the distribution's services are not needed.
    $sudo service redis-server stop >/dev/null 2>&1 || true
    $sudo service prometheus stop >/dev/null 2>&1 || true
    $sudo service prometheus-alertmanager stop >/dev/null 2>&1 || true
}

case "${1:-}" in
    preview)
        shift
        setup
        exec "$VENV/bin/llm-platform" preview "$@"
        ;;
    test)
        shift
        setup
        os_packages
        "$VENV/bin/ruff" check .
        "$VENV/bin/mypy"
        exec "$VENV/bin/pytest" -n 2 "$@"
        ;;
    *)
        echo "usage: ./tasks.sh preview [options] | ./tasks.sh test [pytest options]" >&2
        exit 2
        ;;
esac
