"""A drop-in for Fed-BioMed v4.4's ``fedbiomed.researcher.requests.Requests``.

``Requests(mess=None)`` is a singleton, configured as v4.4 configures it (its ``environ`` where
``fedbiomed`` is installed, else the environment variables ``MQTT_BROKER``,
``MQTT_BROKER_PORT``, ``RESEARCHER_ID``, ``UPLOADS_URL``), and returns v4.4's types: Fed-BioMed's
own ``Responses`` and ``ErrorNumbers`` where ``fedbiomed`` can be imported, fedreq's equivalents
where it cannot. In a v4.4 notebook, one line before importing ``Experiment``::

    import fedreq.fedbiomed; fedreq.fedbiomed.install()
"""

import inspect
import logging
import os
import sys
import tempfile
import threading
from typing import Any, Callable, Dict, Optional

import fedreq
from fedreq.responses import Responses as _FedreqResponses

logger = logging.getLogger("fedreq.fedbiomed")

# The modules of Fed-BioMed v4.4 that import `Requests` by name.
_FEDBIOMED_MODULES = (
    "fedbiomed.researcher.requests",
    "fedbiomed.researcher.job",
    "fedbiomed.researcher.experiment",
)


def install() -> None:
    """Makes Fed-BioMed v4.4 use fedreq: its ``Experiment`` and ``Job`` then create this
    ``Requests``. Call it before creating an ``Experiment``."""
    import importlib

    for name in _FEDBIOMED_MODULES:
        module = sys.modules.get(name) or importlib.import_module(name)
        module.Requests = Requests


def _responses_class():
    try:
        from fedbiomed.researcher.responses import Responses
    except ImportError:
        return _FedreqResponses
    return Responses


class ErrorNumber(str):
    """An ``errnum`` where ``fedbiomed`` is not installed: the text that travelled, with
    ``value`` and ``name`` as v4.4's ``ErrorNumbers`` members have them."""

    @property
    def value(self) -> str:
        return str(self)

    @property
    def name(self) -> str:
        return self.split(":", 1)[0]


def _errnum(text: str):
    """v4.4's ``deserialize_msg``: the ``ErrorNumbers`` member of this value, else FB999."""
    try:
        from fedbiomed.common.constants import ErrorNumbers
    except ImportError:
        return ErrorNumber(text)
    for member in ErrorNumbers:
        if member.value == text:
            return member
    return ErrorNumbers.FB999


def _as_v44(responses: "fedreq.Responses"):
    items = []
    for item in responses.data():
        if "errnum" in item:
            item = {**item, "errnum": _errnum(item["errnum"])}
        items.append(item)
    return _responses_class()(items)


def _configuration() -> Dict[str, Any]:
    """v4.4's settings: its ``environ`` where ``fedbiomed`` is installed (which reads its
    configuration file), else what ``fedreq.Requests`` reads from the environment."""
    try:
        from fedbiomed.researcher.environ import environ
    except ImportError:
        return {}
    return {
        "broker": f"{environ['MQTT_BROKER']}:{environ['MQTT_BROKER_PORT']}",
        "researcher_id": environ["RESEARCHER_ID"],
        "uploads_url": environ["UPLOADS_URL"],
        "timeout": float(environ["TIMEOUT"]),
    }


class _Singleton(type):
    """One instance per class, created under a lock, as v4.4's ``SingletonMeta``."""

    _objects: Dict[type, Any] = {}
    _lock = threading.Lock()

    def __call__(cls, *args, **kwargs):
        with cls._lock:
            if cls not in cls._objects:
                cls._objects[cls] = super().__call__(*args, **kwargs)
        return cls._objects[cls]


class Requests(metaclass=_Singleton):
    """Fed-BioMed v4.4's ``Requests``, over fedreq. ``mess`` may be a ``fedreq.Requests`` to use;
    anything else (v4.4's ``Messaging``) is ignored, as v4.4 ignores what is not a ``Messaging``."""

    def __init__(self, mess: Any = None):
        if isinstance(mess, fedreq.Requests):
            self.messaging = mess
        else:
            self.messaging = fedreq.Requests(**_configuration())

    def get_messaging(self) -> "fedreq.Requests":
        """The ``fedreq.Requests`` underneath."""
        return self.messaging

    def send_message(self, msg: dict, client: Optional[str] = None, add_sequence: bool = False) -> Optional[int]:
        """Sends ``msg`` to every node, or ``client``; returns the sequence added, if asked."""
        sequence = self.messaging.send_message(msg, client, add_sequence)
        if add_sequence:
            msg["sequence"] = sequence
        return sequence

    def get_messages(self, commands: list = [], time: float = 0.0):
        """Waits ``time`` seconds, then takes the messages of ``commands`` (all when empty)."""
        return _as_v44(self.messaging.get_messages(list(commands), time))

    def get_responses(
        self,
        look_for_commands: list,
        timeout: Optional[float] = None,
        only_successful: bool = True,
        while_responses: bool = True,
    ):
        """The replies of ``look_for_commands`` to the messages sent since the previous call."""
        return _as_v44(
            self.messaging.get_responses(list(look_for_commands), timeout, only_successful, while_responses)
        )

    def ping_nodes(self) -> list:
        """The ids of the nodes online."""
        return self.messaging.ping_nodes()

    def search(self, tags: tuple, nodes: Optional[list] = None) -> dict:
        """node id -> the datasets carrying every one of ``tags``."""
        return self.messaging.search(list(tags), list(nodes) if nodes else None)

    def list(self, nodes: Optional[list] = None, verbose: bool = False) -> dict:
        """node id -> its datasets; with ``verbose``, logged as tables."""
        return self.messaging.list(list(nodes) if nodes else None, verbose)

    def training_plan_approve(
        self,
        training_plan: Any,
        description: str = "no description provided",
        nodes: list = [],
        timeout: int = 5,
    ) -> dict:
        """Sends a training plan (a path, a training plan class or instance) for approval;
        node id -> whether it acknowledged. As v4.4, a plan that cannot be used is logged
        and ``{}`` returned."""
        if not isinstance(nodes, list):
            logger.error("bad nodes argument, training plan not sent")
            return {}
        if isinstance(training_plan, str):
            if not (os.path.isfile(training_plan) and os.access(training_plan, os.R_OK)):
                logger.error(f"cannot access to the file ({training_plan})")
                return {}
            path = training_plan
        else:
            path = _save_code(training_plan)
            if path is None:
                return {}
        try:
            return self.messaging.training_plan_approve(path, str(description), nodes or None, timeout)
        except fedreq.TrainingPlanError as error:
            logger.error(f"This file is not a python file ({error})")
            return {}

    def add_monitor_callback(self, callback: Callable[[Dict], None]) -> None:
        """Calls ``callback`` with every monitoring scalar, as a dict."""
        self.messaging.add_monitor_callback(callback)

    def remove_monitor_callback(self) -> None:
        """Stops calling the monitoring callback."""
        self.messaging.remove_monitor_callback()


def _save_code(training_plan: Any) -> Optional[str]:
    """v4.4's handling of a training plan class or instance: instantiated if a class, then
    saved with its ``save_code`` to a temporary file, whose path is returned."""
    if inspect.isclass(training_plan):
        try:
            instance = training_plan()
            instance.add_dependency(instance.init_dependencies())
        except Exception as error:
            logger.error(f"cannot instantiate the given training plan ({error})")
            return None
    else:
        instance = training_plan
    handle, path = tempfile.mkstemp(prefix="training_plan_", suffix=".py")
    os.close(handle)
    try:
        instance.save_code(path)
    except Exception as error:
        logger.error(f"Cannot save the training plan to a file ({error})")
        logger.error(f"Are you sure that {training_plan} is a TrainingPlan ?")
        return None
    return path
