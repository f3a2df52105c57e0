"""A waiting request releases the GIL, yields to Ctrl-C, and one Requests serves many threads."""

import os
import signal
import threading
import time

import fedreq


def test_other_threads_run_while_a_request_waits(memory):
    requests = memory.requests(timeout=1)
    counted = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counted.append(1)

    counter = threading.Thread(target=count)
    counter.start()
    before = len(counted)
    requests.get_messages(time=0.5)
    during = len(counted) - before
    stop.set()
    counter.join()
    # With the GIL held for 0.5 s the counter would barely move.
    assert during > 10_000


def test_ctrl_c_interrupts_a_waiting_request_and_leaves_it_usable(memory):
    requests = memory.requests(timeout=1)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        requests.get_messages(time=30)
    except KeyboardInterrupt:
        interrupted = time.monotonic() - started
    else:
        raise AssertionError("the request was not interrupted")
    finally:
        timer.cancel()
    assert interrupted < 10
    assert sorted(requests.ping_nodes()) == memory.node_ids


def test_eight_threads_share_one_requests(memory):
    requests = memory.requests(timeout=1)
    results, errors = [], []

    def work(index):
        try:
            for _ in range(25):
                results.append(sorted(requests.ping_nodes()))
            requests.send_message({"command": "list"}, client=f"node-{index % 3 + 1}")
            results.append(sorted(requests.list(nodes=[f"node-{index % 3 + 1}"])))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 8 * 26
    assert results.count(memory.node_ids) == 8 * 25
