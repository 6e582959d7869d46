"""Real processes for the integration tests: an ``errand serve`` (from ``$ERRAND_BIN``, else
``<repo>/target/debug/errand``) per test on its own loopback port and data directory, its
tokens, Python worker processes and a uvicorn app. Tests are skipped when the binary is
missing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

PYTHON_DIR = Path(__file__).resolve().parents[2]
REPO = PYTHON_DIR.parent


def errand_bin() -> Path:
    return Path(os.environ.get("ERRAND_BIN") or REPO / "target" / "debug" / "errand")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Proc:
    """A child process whose stdout and stderr go to files."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def out(self) -> str:
        return self.stdout.read_text(errors="replace")

    def err(self) -> str:
        return self.stderr.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGCONT)
                self.popen.terminate()
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


@dataclass
class Errand:
    """One errand server with its data directory, and the processes a test starts beside it."""

    binary: Path
    root: Path
    url: str = ""
    procs: list[Proc] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Proc:
        stdout, stderr = self.root / f"{name}.out", self.root / f"{name}.err"
        popen = subprocess.Popen(
            argv, stdout=stdout.open("wb"), stderr=stderr.open("wb"),
            env={**os.environ, **(env or {})}, cwd=cwd,
        )
        proc = Proc(name, popen, stdout, stderr)
        self.procs.append(proc)
        return proc

    def start(self, env: dict[str, str] | None = None) -> None:
        server = self.spawn("serve", [
            str(self.binary), "serve", "--store", "sqlite", "--addr", "127.0.0.1:0",
            "--data-dir", str(self.data_dir), "--no-reference-tasks",
        ], env={"ERRAND_LOG": "info", **(env or {})})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in server.out().splitlines():
                if line.startswith("errand listening on "):
                    self.url = line.removeprefix("errand listening on ").strip()
                    return
            if server.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"errand serve did not start:\n{server.err()[-3000:]}")

    def token(self, *args: str) -> str:
        """``errand token ARGS…`` for this server's secret: the last line of stdout."""
        done = subprocess.run(
            [str(self.binary), "token", "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"errand token {' '.join(args)} failed: {done.stderr}")
        return done.stdout.strip().splitlines()[-1]

    def user_token(self, user: str, tenant: str | None = None) -> str:
        return self.token("--user", user, *(["--tenant", tenant] if tenant else []))

    def worker_token(self, name: str) -> str:
        return self.token("--worker", name)

    def worker(self, name: str, *options: str, queue: str = "py_it",
               env: dict[str, str] | None = None,
               app: str = "tests.integration.app:client") -> Proc:
        """``python -m errand worker APP`` (default tests.integration.app:client) as worker
        ``name``."""
        return self.spawn(name, [
            sys.executable, "-m", "errand", "worker", app,
            "--queues", queue, *options,
        ], env={
            "ERRAND_URL": self.url, "ERRAND_TOKEN": self.worker_token(name),
            "ERRAND_TEST_QUEUE": queue, "ERRAND_TEST_DIR": str(self.root),
            "PYTHONUNBUFFERED": "1", **(env or {}),
        }, cwd=PYTHON_DIR)

    def api(self, name: str = "api") -> str:
        """The FastAPI app of ``tests.integration.api`` under uvicorn; returns its URL."""
        port = free_port()
        proc = self.spawn(name, [
            sys.executable, "-m", "uvicorn", "tests.integration.api:app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ], env={"ERRAND_URL": self.url}, cwd=PYTHON_DIR)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            if proc.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"uvicorn did not start:\n{proc.err()[-3000:]}")

    def example(self, name: str, script: str, command: str, env: dict[str, str]) -> Proc:
        """``python examples/SCRIPT COMMAND`` with errand's URL, a worker token and ``env``."""
        return self.spawn(name, [sys.executable, str(PYTHON_DIR / "examples" / script), command],
                          env={"ERRAND_URL": self.url, "ERRAND_TOKEN": self.worker_token(name),
                               "ERRAND_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1",
                               **env}, cwd=self.root)

    def example_api(self, name: str, script: str, env: dict[str, str]) -> str:
        """The FastAPI app of an example under uvicorn; returns its URL once it answers."""
        port = free_port()
        proc = self.example(name, script, "api", {"PORT": str(port), **env})
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/openapi.json", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            if proc.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{script} api did not start:\n{proc.err()[-3000:]}")

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} stderr ---\n{p.err()[-4000:]}" for p in self.procs)


@pytest.fixture
def errand_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Errand]:
    binary = errand_bin()
    if not binary.exists():
        pytest.skip(f"no errand binary at {binary} (build it, or set ERRAND_BIN)")
    server = Errand(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(server.logs())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if getattr(report, "when", None) == "call":
        setattr(item, "rep_call", report)
    return report
