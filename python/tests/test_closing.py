"""Closing, cancelling and exiting: nothing is left behind on the broker, an interrupted request
does not hold up the next one, and neither interpreter exit nor a fork hangs or aborts."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import fedreq
from conftest import running_mosquitto


def run_python(code, **env):
    """Runs `code` in a new interpreter; its exit status and output."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )
    return done.returncode, done.stdout + done.stderr


def test_ctrl_c_cancels_the_request_so_the_next_of_its_command_starts_at_once(memory):
    requests = memory.requests(timeout=5)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        requests.list(nodes=["ghost-node"])
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the request was not interrupted")
    finally:
        timer.cancel()
    started = time.monotonic()
    assert sorted(requests.list()) == memory.node_ids
    assert time.monotonic() - started < 1.0, "the abandoned list was cancelled"


def test_a_closed_requests_says_so_and_a_context_manager_closes_it(memory):
    with memory.requests(timeout=1) as requests:
        assert len(requests.ping_nodes()) == 3
    with pytest.raises(fedreq.Error, match="closed"):
        requests.ping_nodes()
    requests.close()  # twice: nothing
    assert "closed" in repr(requests)


def test_a_forked_child_gets_a_clear_error_not_a_hang(memory):
    requests = memory.requests(timeout=1)
    assert len(requests.ping_nodes()) == 3
    pid = os.fork()
    if pid == 0:
        try:
            requests.ping_nodes()
            os._exit(1)
        except fedreq.Error as error:
            os._exit(0 if "fork" in str(error) else 2)
        except BaseException:
            os._exit(3)
    started = time.monotonic()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert time.monotonic() - started < 10
    assert len(requests.ping_nodes()) == 3, "the parent's is untouched"


def test_exit_with_a_request_waiting_in_a_daemon_thread_is_clean():
    code, output = run_python("""
        import threading, time, fedreq
        federation = fedreq.Federation(2, transport="memory")
        requests = federation.requests(timeout=30)
        threading.Thread(target=lambda: requests.search(["nothing"], nodes=["ghost"]), daemon=True).start()
        threading.Thread(target=lambda: requests.get_messages(time=30), daemon=True).start()
        time.sleep(0.3)
        print("leaving")
    """)
    assert code == 0, output
    assert "leaving" in output


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto_sub is not installed")
def test_processes_that_drop_or_exit_leave_no_session_on_the_broker(tmp_path):
    with running_mosquitto(tmp_path, "sys_interval 1") as address, \
            fedreq.Federation(2, broker=address):
        for ending in ["del r", "r.close()", "pass  # interpreter exit"]:
            code, output = run_python(f"""
                import fedreq
                r = fedreq.Requests(broker="{address}", timeout=2)
                assert len(r.ping_nodes()) == 2
                {ending}
            """)
            assert code == 0, output
        # The broker says so every second (sys_interval), later on a loaded machine: a session
        # left behind keeps the count above 0 for good.
        host, port = address.split(":")
        deadline = time.monotonic() + 10
        while True:
            kept = subprocess.run(
                ["mosquitto_sub", "-h", host, "-p", port, "-C", "1", "-W", "10",
                 "-t", "$SYS/broker/clients/disconnected"],
                capture_output=True, text=True, timeout=20,
            ).stdout.strip()
            if kept == "0" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert kept == "0", f"{kept} sessions left on the broker"
