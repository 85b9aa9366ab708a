"""A new user's world for the end-to-end tests: their own files in a folder of their own, the
clinic's booking server on 127.0.0.1, and the real `voicelab` CLI and REST service as processes.

Everything here is built from what docs/formats.md and docs/api.md say, not from the code: the
tests check that the documented contract holds for an agent the bundled datasets never saw.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent / "data"
#: The clinic's API token: the agent's webhook sends it as {{secret__clinic_token}}, which
#: voicelab takes from SECRET__CLINIC_TOKEN (docs/formats.md, "Tools on the local backend").
SECRET = "smile-e2e-7f3a9c-token"
#: Patients whose booking the clinic's calendar refuses with 500.
FAILING_PHONES = {"+447700900500"}
CLI_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Booking:
    path: str
    authorization: str | None
    body: Any


@dataclass
class Clinic:
    """The clinic's booking API: POST /bookings/<phone> books the slot (200 with a reference),
    answers 500 for the patients in FAILING_PHONES, and 401 without the right bearer token."""

    port: int
    requests: list[Booking] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bookings(self) -> list[Booking]:
        with self.lock:
            return list(self.requests)


def _handler(clinic: Clinic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = raw.decode("utf-8", "replace")
            authorization = self.headers.get("Authorization")
            with clinic.lock:
                clinic.requests.append(Booking(self.path, authorization, body))
            phone = self.path.rstrip("/").rsplit("/", 1)[-1]
            if authorization != f"Bearer {SECRET}":
                self._answer(401, {"error": "unauthorized"})
            elif phone in FAILING_PHONES:
                self._answer(500, {"error": "calendar database unavailable"})
            else:
                self._answer(200, {"reference": f"SD-{phone[-4:]}", "status": "booked"})

        def _answer(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def clinic():
    clinic = Clinic(port=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(clinic))
    clinic.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield clinic
    server.shutdown()
    server.server_close()


@dataclass
class World:
    """A user's project folder: their data (with the clinic's port filled in), runs/ and reports/."""

    home: Path
    data: Path
    env: dict[str, str]

    @property
    def personas(self) -> Path:
        return self.data / "personas"

    @property
    def agents(self) -> Path:
        return self.data / "agents"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    def store(self) -> list[str]:
        return ["--runs", str(self.runs), "--reports", str(self.reports)]

    def voicelab(self, *args: str, env: dict[str, str] | None = None,
                 timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """The real CLI, as a user runs it from their own folder."""
        return subprocess.run([sys.executable, "-m", "voicelab", *args], cwd=self.home,
                              env=env or self.env, capture_output=True, text=True, timeout=timeout)


def render(source: Path, target: Path, port: int) -> None:
    """Copy the data folder with the clinic's port filled into the webhook URLs."""
    shutil.copytree(source, target)
    for path in target.rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("__CLINIC_PORT__", str(port)), encoding="utf-8")


def user_env(home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("ELEVENLABS_", "VOICELAB_", "SECRET__"))}
    env.update({"SECRET__CLINIC_TOKEN": SECRET, "NO_PROXY": "127.0.0.1,localhost",
                "VOICELAB_LOG_DIR": str(home / "logs"), "VOICELAB_UNSAVED_DIR": str(home / "unsaved"),
                "PYTHONUNBUFFERED": "1"})
    return env


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, clinic: Clinic) -> World:
    home = tmp_path_factory.mktemp("smile-dental-user")
    render(DATA, home / "data", clinic.port)
    return World(home=home, data=home / "data", env=user_env(home))


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# ---------------------------------------------------------------------------- the REST service


def http(method: str, url: str, body: Any = None, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def http_json(method: str, url: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
    status, _, raw = http(method, url, body, timeout)
    return status, json.loads(raw) if raw else None


@dataclass
class Service:
    process: subprocess.Popen
    url: str
    runs: Path
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


def start_service(world: World, runs: Path, reports: Path, name: str) -> Service:
    """`voicelab api --port P` over the user's own files; waits for /health."""
    port = free_port()
    log = world.home / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "voicelab", "api", "--port", str(port), "--personas", str(world.personas),
             "--agents", str(world.agents), "--runs", str(runs), "--reports", str(reports), "--quiet"],
            cwd=world.home, env=world.env, stdout=out, stderr=subprocess.STDOUT)
    service = Service(process, f"http://127.0.0.1:{port}", runs, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"voicelab api exited {process.returncode}:\n{service.log_text()}")
        try:
            if http("GET", service.url + "/health", timeout=2)[0] == 200:
                return service
        except OSError:
            pass
        time.sleep(0.2)
    service.stop(signal.SIGKILL)
    raise AssertionError(f"voicelab api did not answer /health within 60 s:\n{service.log_text()}")


@pytest.fixture(scope="session")
def service(world: World):
    service = start_service(world, world.runs, world.reports, "api")
    yield service
    service.stop()
