import csv
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import fedreq
from test_requests import train_message


def test_scalar_writer_writes_every_scalar_for_tensorboards_own_reader_csv_and_json_lines(requests, tmp_path):
    writer = fedreq.ScalarWriter(tensorboard=tmp_path / "runs", csv=tmp_path / "s.csv", jsonl=tmp_path / "s.jsonl")
    requests.add_monitor_callback(writer)
    nodes = ["node-1", "node-2"]
    for round_ in range(10):
        for i, node in enumerate(nodes):
            requests.send_message({**train_message(f"dataset-clinical-{i}"), "round": round_}, node)
        assert len(requests.get_responses(["train"])) == 2
    requests.remove_monitor_callback()

    # A run per job and node, tagged as Fed-BioMed's Monitor tags them; the node's loss is
    # 1 / (round + 1), one iteration a round: steps 1..10.
    expected = [(step, pytest.approx(1 / step)) for step in range(1, 11)]
    for node in nodes:
        run = EventAccumulator(str(tmp_path / "runs" / "job-1" / node))
        run.Reload()
        assert run.Tags()["scalars"] == ["TRAINING/Loss"]
        assert [(e.step, e.value) for e in run.Scalars("TRAINING/Loss")] == expected

    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 20
    assert {(r["node_id"], r["phase"], r["metric"]) for r in rows} == {(n, "training", "Loss") for n in nodes}
    lines = [json.loads(line) for line in open(tmp_path / "s.jsonl")]
    assert sorted((l["node_id"], l["step"]) for l in lines) == [(n, s) for n in nodes for s in range(1, 11)]


def test_scalar_writer_refuses_what_is_not_a_scalar(tmp_path):
    writer = fedreq.ScalarWriter(jsonl=tmp_path / "s.jsonl")
    with pytest.raises(ValueError, match="not a monitoring scalar but pong"):
        writer({"command": "pong", "researcher_id": "r", "node_id": "n", "sequence": 1, "success": True, "protocol_version": "1"})
    with pytest.raises(OSError, match="cannot write"):
        fedreq.ScalarWriter(csv=tmp_path / "no-such-folder" / "s.csv")
