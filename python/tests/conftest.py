"""Fixtures: a federation on each transport (the in-memory broker, the embedded MQTT broker,
and mosquitto when installed), and a mosquitto started on a free loopback port."""

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

import fedreq

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "researcher" / "plans" / "example_plan.py"
# Short enough for quick tests, long enough for a loaded CI machine.
TIMEOUT = 1.0

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    """What a test's researchers learn of their brokers' nodes stays with the test."""
    folder = tmp_path / "state"
    monkeypatch.setenv("FEDREQ_STATE_DIR", str(folder))
    return folder


@contextlib.contextmanager
def running_mosquitto(folder, extra=""):
    """A mosquitto of its own on a free loopback port, with `extra` configuration lines;
    skipped where mosquitto is not installed, unless FEDREQ_REQUIRE_MOSQUITTO is set. Yields
    its "HOST:PORT"."""
    if MOSQUITTO is None:
        if os.environ.get("FEDREQ_REQUIRE_MOSQUITTO"):
            pytest.fail("mosquitto is required (FEDREQ_REQUIRE_MOSQUITTO) but not installed")
        pytest.skip("mosquitto is not installed")
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{extra}\n")
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"mosquitto did not start on port {port}")
            time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def mosquitto(tmp_path):
    """A mosquitto in its default configuration but for the loopback listener."""
    with running_mosquitto(tmp_path) as address:
        yield address


@pytest.fixture(params=["memory", "embedded", "mosquitto"])
def federation(request):
    """Three nodes, on each transport in turn."""
    if request.param == "memory":
        federation = fedreq.Federation(3, transport="memory")
    elif request.param == "embedded":
        federation = fedreq.Federation(3)
    else:
        federation = fedreq.Federation(3, broker=request.getfixturevalue("mosquitto"))
    with federation:
        yield federation


@pytest.fixture
def requests(federation):
    return federation.requests(timeout=TIMEOUT)


@pytest.fixture
def memory():
    with fedreq.Federation(3, transport="memory") as federation:
        yield federation
