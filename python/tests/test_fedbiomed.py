"""fedreq.fedbiomed.Requests used the way Fed-BioMed v4.4's Experiment and Job use Requests,
without fedbiomed installed, then with a stand-in fedbiomed package on the path."""

import sys
import textwrap

import pytest

import fedreq
import fedreq.fedbiomed
from conftest import PLAN
from test_requests import NODES, train_message


@pytest.fixture
def v44(federation, monkeypatch):
    """The drop-in, configured from v4.4's environment variables; a fresh singleton."""
    host, port = (federation.broker or "127.0.0.1:1").rsplit(":", 1)
    monkeypatch.setenv("MQTT_BROKER", host)
    monkeypatch.setenv("MQTT_BROKER_PORT", port)
    monkeypatch.setenv("RESEARCHER_ID", "researcher-v44")
    monkeypatch.setenv("UPLOADS_URL", federation.uploads_url)
    monkeypatch.setattr(fedreq.fedbiomed._Singleton, "_objects", {})
    if federation.broker is None:
        # The in-memory broker is reached through a Requests of the federation, passed as `mess`.
        return fedreq.fedbiomed.Requests(federation.requests(researcher_id="researcher-v44", timeout=1))
    return fedreq.fedbiomed.Requests()


def test_a_singleton_configured_as_v44(v44):
    assert fedreq.fedbiomed.Requests() is v44
    assert fedreq.fedbiomed.Requests(mess=None) is v44
    assert v44.get_messaging().researcher_id == "researcher-v44"


def test_experiment_and_job_calls(v44):
    # Experiment: a search at construction, then the monitor callback.
    found = v44.search(("fbm",))
    assert sorted(found) == NODES
    scalars = []
    v44.add_monitor_callback(scalars.append)
    # Job: approval, training-plan-status to each node, then train to each, then the replies.
    assert v44.training_plan_approve(str(PLAN), "job plan", NODES, timeout=2) == dict.fromkeys(NODES, True)
    for node in NODES:
        v44.send_message({"researcher_id": "researcher-v44", "job_id": "job-1", "training_plan_url": "u",
                          "command": "training-plan-status"}, node)
    statuses = v44.get_responses(look_for_commands=["training-plan-status"], only_successful=False)
    assert sorted(r["node_id"] for r in statuses) == NODES
    for node in NODES:
        v44.send_message(train_message(found[node][0]["dataset_id"] if node != "node-3" else "missing"), node)
    replies = v44.get_responses(look_for_commands=["train", "error"], only_successful=False)
    assert isinstance(replies, fedreq.Responses)
    assert len(replies) == 3
    for m in replies.data():
        if m["command"] == "error":
            # Job reads `m['errnum'].value`.
            assert m["node_id"] == "node-3" and m["errnum"].value.startswith("FB313")
            assert m["errnum"].name == "FB313"
        else:
            assert m["researcher_id"] == "researcher-v44" and m["success"] is True
    assert replies[replies.get_index_from_node_id("node-1")]["node_id"] == "node-1"
    assert scalars and scalars[0]["command"] == "add_scalar"
    v44.remove_monitor_callback()


def test_ping_list_send_and_get_messages(v44):
    assert sorted(v44.ping_nodes()) == NODES
    assert sorted(v44.list(nodes=["node-1", "node-2"])) == ["node-1", "node-2"]
    message = {"researcher_id": "researcher-v44", "command": "ping"}
    sequence = v44.send_message(message, add_sequence=True)
    assert message["sequence"] == sequence
    pongs = v44.get_messages(commands=["pong"], time=0.5)
    assert sorted(p["node_id"] for p in pongs) == NODES
    frame = pongs.dataframe()
    assert sorted(frame["node_id"]) == NODES


def test_approval_of_unusable_plans_returns_empty_as_v44(v44, tmp_path, caplog):
    assert v44.training_plan_approve(str(tmp_path / "missing.py")) == {}
    assert "cannot access to the file" in caplog.text
    broken = tmp_path / "broken.py"
    broken.write_text("class P(:\n")
    assert v44.training_plan_approve(str(broken)) == {}
    assert "This file is not a python file" in caplog.text
    assert v44.training_plan_approve(str(PLAN), nodes="node-1") == {}

    class Plan:  # a training plan class, saved with its save_code as v4.4 does
        def init_dependencies(self):
            return []

        def add_dependency(self, deps):
            pass

        def save_code(self, path):
            with open(path, "w") as f:
                f.write(PLAN.read_text())

    assert v44.training_plan_approve(Plan, nodes=["node-1"]) == {"node-1": True}


STAND_IN = {
    "fedbiomed/__init__.py": "",
    "fedbiomed/common/__init__.py": "",
    "fedbiomed/common/constants.py": """
        from enum import Enum
        class ErrorNumbers(Enum):
            FB313 = "FB313: no dataset matching request"
            FB999 = "FB999: unknown error code sent by the node"
    """,
    "fedbiomed/researcher/__init__.py": "",
    "fedbiomed/researcher/environ.py": "environ = {}",
    "fedbiomed/researcher/responses.py": """
        class Responses:
            def __init__(self, data):
                self._data = list(data)
            def data(self):
                return self._data
    """,
    "fedbiomed/researcher/requests.py": "class Requests:\n    pass\n",
    "fedbiomed/researcher/job.py": """
        from fedbiomed.researcher.requests import Requests
        class Job:
            def __init__(self):
                self._reqs = Requests()
    """,
    "fedbiomed/researcher/experiment.py": "from fedbiomed.researcher.requests import Requests\n",
}


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """A package named fedbiomed with what the drop-in reads of v4.4, removed afterwards."""
    for name, text in STAND_IN.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m == "fedbiomed" or m.startswith("fedbiomed.")]:
        del sys.modules[name]


def test_with_fedbiomed_installed_it_returns_fedbiomeds_types(stand_in, embedded_federation, monkeypatch):
    from fedbiomed.researcher import environ as environ_module

    host, port = embedded_federation.broker.rsplit(":", 1)
    monkeypatch.setattr(environ_module, "environ", {
        "MQTT_BROKER": host, "MQTT_BROKER_PORT": int(port), "RESEARCHER_ID": "from-config-file",
        "UPLOADS_URL": embedded_federation.uploads_url, "TIMEOUT": 1,
    })
    monkeypatch.setattr(fedreq.fedbiomed._Singleton, "_objects", {})
    fedreq.fedbiomed.install()
    from fedbiomed.researcher.job import Job
    from fedbiomed.common.constants import ErrorNumbers
    from fedbiomed.researcher.responses import Responses

    job = Job()
    assert isinstance(job._reqs, fedreq.fedbiomed.Requests)
    assert job._reqs.get_messaging().researcher_id == "from-config-file"
    job._reqs.send_message(train_message("missing"), "node-1")
    replies = job._reqs.get_responses(["train", "error"], only_successful=False)
    assert type(replies) is Responses
    assert replies.data()[0]["errnum"] is ErrorNumbers.FB313


@pytest.fixture
def embedded_federation():
    with fedreq.Federation(1) as federation:
        yield federation
