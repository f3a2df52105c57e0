"""Every operation of fedreq.Requests, against three nodes on each transport."""

import logging
import threading
import time

import pytest

import fedreq
from conftest import PLAN, TIMEOUT

NODES = ["node-1", "node-2", "node-3"]


def train_message(dataset_id):
    """A v4.4 train request, as Job sends it."""
    return {
        "command": "train", "job_id": "job-1", "params_url": "", "training_args": {},
        "dataset_id": dataset_id, "training": True, "model_args": {}, "training_plan_url": "",
        "training_plan_class": "Plan", "round": 1, "aggregator_args": {},
        "secagg_servkey_id": None, "secagg_biprime_id": None, "secagg_random": None,
        "secagg_clipping_range": None,
    }


def test_ping_nodes_lists_every_node(requests):
    online = requests.ping_nodes()
    assert isinstance(online, list)
    assert sorted(online) == NODES


def test_list_maps_each_node_to_its_datasets(requests):
    datasets = requests.list()
    assert sorted(datasets) == NODES
    assert all(isinstance(entry, dict) and "dataset_id" in entry for entries in datasets.values() for entry in entries)
    assert [entry["name"] for entry in datasets["node-2"]] == ["clinical-1", "images"]
    assert sorted(requests.list(nodes=["node-1"])) == ["node-1"]


def test_list_verbose_logs_a_table_per_node(requests, caplog):
    with caplog.at_level(logging.INFO, logger="fedreq"):
        requests.list(nodes=["node-3"], verbose=True)
    tables = [r.getMessage() for r in caplog.records if r.name == "fedreq.requests" and "Node: node-3" in r.getMessage()]
    assert len(tables) == 1 and "clinical-2" in tables[0]


def test_search_finds_the_datasets_with_every_tag(requests):
    found = requests.search(["fbm", "even"])
    # Simulated node i holds clinical-i, tagged even for even i: node-1 and node-3.
    assert sorted(found) == ["node-1", "node-3"]
    assert [d["name"] for d in found["node-3"]] == ["clinical-2"]
    assert requests.search(("fbm", "images"), nodes=["node-2"]).keys() == {"node-2"}
    assert requests.search(["no-such-tag"]) == {}


def test_training_plan_approve_takes_a_path_or_the_source(requests, caplog):
    with caplog.at_level(logging.INFO, logger="fedreq"):
        assert requests.training_plan_approve(str(PLAN), "a plan") == dict.fromkeys(NODES, True)
    # Node logs arrive through logging, from the nodes.
    received = [r for r in caplog.records if r.name == "fedreq.node" and "successfully received" in r.getMessage()]
    assert received
    source = PLAN.read_text()
    assert requests.training_plan_approve(source, nodes=["node-2", "node-9"], timeout=TIMEOUT) == {"node-2": True, "node-9": False}


def test_training_plans_are_checked_for_python_3_10_unless_3_11_is_asked_for(requests, monkeypatch):
    source = PLAN.read_text() + "\ntry:\n    pass\nexcept* ValueError:\n    pass\n"
    with pytest.raises(fedreq.TrainingPlanError, match="except\\*` is Python 3.11"):
        requests.training_plan_approve(source, nodes=["node-1"])
    # Sent, then refused by the node, which runs 3.10 as v4 nodes do.
    assert requests.training_plan_approve(source, nodes=["node-1"], python="3.11") == {"node-1": False}
    monkeypatch.setenv("FEDREQ_PYTHON", "3.11")
    assert requests.training_plan_approve(source, nodes=["node-1"]) == {"node-1": False}
    with pytest.raises(ValueError, match="3.10 or 3.11, not 3.12"):
        requests.training_plan_approve(source, python="3.12")


def test_send_message_then_get_responses(requests):
    sequence = requests.send_message({"command": "ping"}, add_sequence=True)
    assert isinstance(sequence, int)
    pongs = requests.get_responses(["pong"])
    assert isinstance(pongs, fedreq.Responses)
    assert sorted(p["node_id"] for p in pongs) == NODES
    assert {p["sequence"] for p in pongs} == {sequence}
    assert requests.send_message({"command": "list"}, client="node-2") is None
    assert [r["node_id"] for r in requests.get_responses(["list"])] == ["node-2"]


def test_get_responses_collects_train_replies_and_errors_as_job_does(requests):
    # node-3 has no dataset-clinical-0: v4.4 answers FB313.
    for node in NODES:
        requests.send_message(train_message("dataset-clinical-0" if node != "node-3" else "nope"), node)
    replies = requests.get_responses(["train", "error"], only_successful=False)
    by_node = {r["node_id"]: r for r in replies}
    assert sorted(by_node) == NODES
    assert by_node["node-1"]["command"] == "train"
    assert by_node["node-3"]["command"] == "error"
    assert by_node["node-3"]["errnum"].startswith("FB313")


def test_get_messages_waits_then_takes_what_is_unclaimed(requests):
    requests.send_message({"command": "ping"}, add_sequence=True)
    pongs = requests.get_messages(["pong"], time=TIMEOUT / 2)
    assert sorted(p["node_id"] for p in pongs) == NODES
    assert len(requests.get_messages(["pong"])) == 0


def test_monitor_callback_gets_each_scalar_from_the_driver_thread_before_the_reply(requests):
    arrived = threading.Event()
    scalars = []

    def on_scalar(scalar):
        # Slow, and making a request of its own: neither delays nor blocks the reply.
        time.sleep(0.2)
        assert sorted(requests.ping_nodes()) == NODES
        scalars.append((threading.get_ident(), scalar))
        arrived.set()

    requests.add_monitor_callback(on_scalar)
    requests.send_message(train_message("dataset-clinical-0"), "node-1")
    requests.get_responses(["train"])
    assert arrived.is_set(), "the node's scalar came before its reply"
    thread, scalar = scalars[0]
    assert thread != threading.get_ident()
    assert scalar["command"] == "add_scalar" and scalar["node_id"] == "node-1"
    assert {"metric", "iteration", "train", "test_on_global_updates", "job_id"} <= scalar.keys()
    requests.remove_monitor_callback()
    scalars.clear()
    arrived.clear()
    requests.send_message(train_message("dataset-clinical-0"), "node-1")
    requests.get_responses(["train"])
    assert not arrived.wait(0.3)


def wait_until(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_roster_shows_the_nodes_online_and_offline(federation, requests):
    # A node's status may still be on its way to the broker when the federation is up.
    wait_until(lambda: [n for n, m in sorted(requests.roster().items()) if m["online"]] == NODES)
    federation.stop_node("node-2")
    wait_until(lambda: requests.roster()["node-2"]["online"] is False)
    assert sorted(requests.ping_nodes()) == ["node-1", "node-3"]


def test_completion_options(federation):
    # Two replies are enough, and node-9 is never awaited past the deadline.
    quick = federation.requests(timeout=30, min_replies=2, grace=0.0)
    assert len(quick.ping_nodes()) >= 2
    bounded = federation.requests(timeout=30, deadline=0.3)
    assert bounded.training_plan_approve(str(PLAN), nodes=["node-9"], timeout=None) == {"node-9": False}
    compat = federation.requests(timeout=0.2, compat=True)
    assert sorted(compat.ping_nodes()) == NODES


def test_a_broker_given_as_several_members_is_reached_past_one_that_is_down(mosquitto, monkeypatch):
    from conftest import free_port

    with fedreq.Federation(3, broker=mosquitto):
        down = f"127.0.0.1:{free_port()}"
        with fedreq.Requests(broker=f"{down},{mosquitto}", timeout=TIMEOUT) as requests:
            assert sorted(requests.ping_nodes()) == NODES
        # Fed-BioMed's variables: hosts separated by commas, each with its port or the default.
        host, port = mosquitto.rsplit(":", 1)
        monkeypatch.setenv("MQTT_BROKER", f"{down},{host}")
        monkeypatch.setenv("MQTT_BROKER_PORT", port)
        with fedreq.Requests(timeout=TIMEOUT) as requests:
            assert sorted(requests.ping_nodes()) == NODES
