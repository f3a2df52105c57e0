"""Every error is a fedreq.Error subclass naming its cause, and the Requests goes on."""

import pytest

import fedreq
from conftest import PLAN, free_port


def test_error_classes():
    for error in (fedreq.ConnectError, fedreq.TrainingPlanError, fedreq.UploadError, fedreq.MessageError):
        assert issubclass(error, fedreq.Error)
    assert issubclass(fedreq.Error, Exception)


def test_an_unreachable_broker_is_a_connect_error():
    port = free_port()
    with pytest.raises(fedreq.ConnectError, match=f"127.0.0.1:{port}"):
        fedreq.Requests(broker=f"127.0.0.1:{port}", timeout=1)
    with pytest.raises(fedreq.ConnectError, match="invalid broker address"):
        fedreq.Requests(broker="mqtt://a b:1")


def test_bad_training_plans(memory, tmp_path):
    requests = memory.requests(timeout=1)
    with pytest.raises(fedreq.TrainingPlanError, match="missing.py"):
        requests.training_plan_approve(str(tmp_path / "missing.py"))
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n    pass\n")
    with pytest.raises(fedreq.TrainingPlanError, match="broken.py:1"):
        requests.training_plan_approve(broken)
    with pytest.raises(TypeError, match="path or the plan's source"):
        requests.training_plan_approve(42)
    assert len(requests.ping_nodes()) == 3


def test_an_unreachable_repository_is_an_upload_error(memory):
    port = free_port()
    requests = memory.requests(timeout=1, uploads_url=f"http://127.0.0.1:{port}/upload/")
    with pytest.raises(fedreq.UploadError, match=f"127.0.0.1:{port}"):
        requests.training_plan_approve(str(PLAN))
    assert len(requests.ping_nodes()) == 3


def test_bad_messages(memory):
    requests = memory.requests(timeout=1)
    with pytest.raises(fedreq.MessageError, match="nope"):
        requests.send_message({"command": "nope"})
    with pytest.raises(fedreq.MessageError, match="sequence"):
        requests.send_message({"command": "list"}, add_sequence=True)
    with pytest.raises(fedreq.MessageError, match="node-1/x"):
        requests.send_message({"command": "ping"}, client="node-1/x", add_sequence=True)
    with pytest.raises(fedreq.MessageError, match="unknown command `pongs`"):
        requests.get_responses(["pongs"])
    with pytest.raises(TypeError):
        requests.send_message("ping")
    with pytest.raises(ValueError, match="timeout"):
        requests.get_responses(["pong"], timeout=-1)
    assert len(requests.ping_nodes()) == 3


def test_bad_environment(monkeypatch):
    monkeypatch.setenv("MQTT_BROKER_PORT", "eighteen")
    with pytest.raises(fedreq.Error, match="MQTT_BROKER_PORT `eighteen` is not a port"):
        fedreq.Requests()
    monkeypatch.setenv("FEDREQ_TIMEOUT", "soon")
    with pytest.raises(fedreq.Error, match="FEDREQ_TIMEOUT `soon`"):
        fedreq.Requests(broker="127.0.0.1:1")


def test_bad_arguments_are_value_errors_naming_the_argument():
    for kwargs, name in [
        ({"qos": -1}, "qos"),
        ({"qos": 3}, "qos"),
        ({"min_replies": -1}, "min_replies"),
        ({"min_replies": 0}, "min_replies"),
        ({"timeout": -1}, "timeout must be more than 0"),
        ({"timeout": 0}, "timeout must be more than 0"),
    ]:
        with pytest.raises(ValueError, match=name):
            fedreq.Requests(broker="127.0.0.1:1", **kwargs)
    with pytest.raises(ValueError, match="nodes must be 0 or more"):
        fedreq.Federation(-1, transport="memory")
    # Datasets are checked as `fedreq node --datasets` checks its file.
    with pytest.raises(ValueError, match="datasets"):
        fedreq.Federation(1, transport="memory", datasets=[{"x": 1}])


def test_a_closed_federation_gives_no_requests():
    federation = fedreq.Federation(1, transport="memory")
    federation.close()
    with pytest.raises(fedreq.Error, match="closed"):
        federation.requests()
