"""A new process's first requests: nodes that announce nothing (as Fed-BioMed v4.4's), nodes
that stopped, and broadcasts sent with send_message. None waits out the timeout."""

import time

import pytest

import fedreq

TEN = [f"node-{i}" for i in range(1, 11)]


def timed(call):
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


@pytest.fixture
def silent(mosquitto):
    """Ten nodes that announce nothing, on a mosquitto in its default configuration."""
    with fedreq.Federation(10, broker=mosquitto, presence=False) as federation:
        yield federation


def test_a_new_process_finds_silent_nodes_on_its_first_broadcasts(silent, mosquitto):
    requests = fedreq.Requests(broker=mosquitto, timeout=5)
    assert requests.roster() == {}, "they announce nothing"
    online, took = timed(requests.ping_nodes)
    assert sorted(online) == sorted(TEN)
    assert took < 1.0, f"first contact, not the 5 s timeout: {took:.3f} s"
    found, took = timed(lambda: requests.search(["fbm"]))
    assert sorted(found) == sorted(TEN)
    assert took < 1.0, took
    nothing, took = timed(lambda: requests.search(["nothing-here"]))
    assert nothing == {}
    assert took < 1.0, f"the fences end an empty search: {took:.3f} s"


def test_what_one_process_heard_the_next_one_expects(silent, mosquitto, state_dir):
    first = fedreq.Requests(broker=mosquitto, timeout=5)
    assert len(first.ping_nodes()) == 10
    first.close()  # closing keeps the nodes heard for the next process on this broker
    assert list(state_dir.glob("known-*.json")), "kept in FEDREQ_STATE_DIR"
    second = fedreq.Requests(broker=mosquitto, timeout=5)
    online, took = timed(second.ping_nodes)
    assert sorted(online) == sorted(TEN)
    assert took < 0.5, took


def test_a_node_that_stopped_is_not_waited_for(memory):
    requests = memory.requests(timeout=5)
    assert len(requests.ping_nodes()) == 3
    memory.stop_node("node-2")
    online, took = timed(requests.ping_nodes)
    assert sorted(online) == ["node-1", "node-3"]
    assert took < 1.0, f"it said it stopped: {took:.3f} s"


def test_get_responses_after_a_broadcast_ends_once_the_nodes_answered(memory):
    requests = memory.requests(timeout=2)
    requests.ping_nodes()
    requests.send_message({"command": "ping"}, add_sequence=True)
    responses, took = timed(lambda: requests.get_responses(["pong"]))
    assert len(responses) == 3
    assert took < 1.0, f"not the whole timeout: {took:.3f} s"


def test_get_messages_of_a_command_no_node_sends_waits_and_matches_nothing(memory):
    requests = memory.requests(timeout=2)
    requests.send_message({"command": "ping"}, add_sequence=True)
    messages, took = timed(lambda: requests.get_messages(["no-such-command"], time=0.2))
    assert len(messages) == 0
    assert took >= 0.2
    assert len(requests.get_messages(["pong"], time=0.2)) == 3, "the pongs are still there"


def test_get_responses_after_a_broadcast_search_ends_once_every_node_spoke(memory):
    requests = memory.requests(timeout=2)
    requests.ping_nodes()
    requests.send_message({"command": "search", "tags": ["nothing-here"]})
    responses, took = timed(lambda: requests.get_responses(["search"]))
    assert len(responses) == 0
    assert took < 1.0, f"the collect's fence ends it: {took:.3f} s"
