"""Real child processes for tests and the benchmark: start, wait until ready, always clean up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

STDERR_TAIL_BYTES = 4000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProcessError(RuntimeError):
    pass


class ManagedProcess:
    """A child process bound to a local port; use as a context manager so it is killed even when a test fails."""

    def __init__(self, argv: Sequence[str], port: int, env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._env = {**os.environ, **(env or {})}
        self._stderr = tempfile.NamedTemporaryFile(prefix="managed-", suffix=".stderr", delete=False)  # noqa: SIM115
        self.stderr_path = Path(self._stderr.name)
        # Own process group, so uvicorn's worker children die with it.
        self.process = subprocess.Popen(
            self.argv, env=self._env, stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True
        )

    def stderr_tail(self) -> str:
        with contextlib.suppress(OSError):
            data = self.stderr_path.read_bytes()
            return data[-STDERR_TAIL_BYTES:].decode(errors="replace")
        return ""

    def _ready(self, ready_path: str | None) -> bool:
        if ready_path is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
            return False
        try:
            with urllib.request.urlopen(self.url + ready_path, timeout=1) as resp:
                return 200 <= resp.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, ready_path: str | None = "/health", timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProcessError(
                    f"{self.argv[:4]} exited with {self.process.returncode} before ready:\n{self.stderr_tail()}"
                )
            if self._ready(ready_path):
                return
            time.sleep(0.05)
        self.terminate()
        raise ProcessError(f"{self.argv[:4]} not ready on port {self.port} after {timeout}s:\n{self.stderr_tail()}")

    def send_signal(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM, then SIGKILL the whole process group if it lingers; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        code = self.process.wait()
        self._stderr.close()
        return code

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the process and delete its stderr capture."""
        self.terminate()
        with contextlib.suppress(OSError):
            self.stderr_path.unlink()


def start(
    argv: Sequence[str],
    port: int,
    env: Mapping[str, str] | None = None,
    ready_path: str | None = "/health",
    timeout: float = 30,
) -> ManagedProcess:
    proc = ManagedProcess(argv, port, env)
    try:
        proc.wait_ready(ready_path, timeout)
    except BaseException:
        proc.close()
        raise
    return proc


def _redis_pong(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


def start_redis(port: int, *options: str, timeout: float = 15) -> ManagedProcess:
    """A throwaway redis-server answering plain PING on `port`; `options` are further redis-server flags."""
    proc = ManagedProcess(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", *options], port)
    deadline = time.monotonic() + timeout
    while not _redis_pong(port):
        if proc.process.poll() is not None or time.monotonic() > deadline:
            tail = proc.stderr_tail()
            proc.close()
            raise ProcessError(f"redis-server on port {port} did not answer PING:\n{tail}")
        time.sleep(0.05)
    return proc
