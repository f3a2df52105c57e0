"""Type stubs of fedreq's extension module; the package ``fedreq`` re-exports every name."""

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .responses import Responses

DEFAULT_UPLOADS_URL: str
"""Fed-BioMed v4.4's default ``UPLOADS_URL``."""

class Error(Exception):
    """A fedreq operation failed."""

class ConnectError(Error):
    """The broker could not be reached, or the connection to it stopped."""

class TrainingPlanError(Error):
    """The training plan cannot be read or is not valid Python."""

class UploadError(Error):
    """The training plan could not be uploaded to the file repository."""

class MessageError(Error):
    """A message that cannot be sent: not a valid request, an unknown node or command."""

class Requests:
    """Fed-BioMed v4.4's researcher requests to the nodes. One instance may be shared by
    threads; every call waits with the GIL released, and Ctrl-C interrupts it."""

    def __init__(
        self,
        broker: Optional[str] = None,
        researcher_id: Optional[str] = None,
        uploads_url: Optional[str] = None,
        timeout: Optional[float] = None,
        *,
        compat: bool = False,
        min_replies: Optional[int] = None,
        grace: float = 0.0,
        deadline: Optional[float] = None,
        roster: Optional[List[str]] = None,
        qos: int = 1,
        username: Optional[str] = None,
        password: Optional[str] = None,
        ca_file: Optional[Union[str, os.PathLike]] = None,
    ) -> None:
        """Connects to the MQTT broker ("HOST:PORT" or "mqtt://HOST:PORT"). Not given, each
        setting comes from MQTT_BROKER, MQTT_BROKER_PORT, RESEARCHER_ID, UPLOADS_URL (v4.4's),
        FEDREQ_TIMEOUT, MQTT_USERNAME, MQTT_PASSWORD (fedreq's), else localhost:1883, a random
        id, v4.4's upload URL, 5 seconds. ``roster``: the federation's node ids (else
        FEDREQ_ROSTER, comma-separated): a broadcast completes once they answered; without one,
        the nodes online by presence and those heard before on this broker are expected (kept
        in FEDREQ_STATE_DIR, else ~/.local/state/fedreq). Raises ConnectError."""
    @property
    def researcher_id(self) -> str:
        """Our researcher id."""
    @property
    def timeout(self) -> float:
        """Seconds of quiet after the last reply before a request completes."""
    @property
    def uploads_url(self) -> Optional[str]:
        """Where training plans are uploaded."""
    def ping_nodes(self) -> List[str]:
        """The ids of the nodes that answer a ping."""
    def search(self, tags: Sequence[str], nodes: Optional[List[str]] = None) -> Dict[str, List[Dict[str, Any]]]:
        """node id -> the datasets carrying every one of ``tags`` (of ``nodes`` only, when given)."""
    def list(self, nodes: Optional[List[str]] = None, verbose: bool = False) -> Dict[str, List[Dict[str, Any]]]:
        """node id -> its datasets; with ``verbose``, logged as tables (``fedreq.requests``, INFO)."""
    def training_plan_approve(
        self,
        training_plan: Union[str, os.PathLike],
        description: str = "no description provided",
        nodes: Optional[List[str]] = None,
        timeout: Optional[float] = 5,
        python: Optional[str] = None,
    ) -> Dict[str, bool]:
        """Checks the plan (a path, or its source) as Python ``python`` ("3.10", the default
        and v4 nodes', or "3.11"; else ``FEDREQ_PYTHON``), uploads it and asks the nodes to
        register it; node id -> acknowledged within ``timeout``. Raises TrainingPlanError,
        UploadError, ValueError for another version."""
    def send_message(self, msg: Dict[str, Any], client: Optional[str] = None, add_sequence: bool = False) -> Optional[int]:
        """Sends a request message (a dict with "command") to every node, or to ``client``;
        returns the sequence added with ``add_sequence``, else None. Raises MessageError."""
    def get_messages(self, commands: List[str] = [], time: float = 0.0) -> Responses:
        """Waits ``time`` seconds, then takes every message of ``commands`` (all when empty)
        that no request took. A command name no node sends matches nothing, as in v4.4: it
        waits, and returns what matches."""
    def get_responses(
        self,
        look_for_commands: List[str],
        timeout: Optional[float] = None,
        only_successful: bool = True,
        while_responses: bool = True,
    ) -> Responses:
        """The replies of ``look_for_commands`` to the messages sent since the previous call:
        complete once every node they went to answered, else ``timeout`` after the last reply."""
    def add_monitor_callback(self, callback: Callable[[Dict[str, Any]], None]) -> None:
        """Calls ``callback`` with every monitoring scalar for us (v4.4's add_scalar dict),
        from fedreq's event thread."""
    def remove_monitor_callback(self) -> None:
        """Stops calling the monitor callback."""
    def roster(self) -> Dict[str, Dict[str, Any]]:
        """node id -> {"online", "since" (Unix time), "incarnation"} for nodes announcing presence."""

class ScalarWriter:
    """A monitor callback (``Requests.add_monitor_callback(ScalarWriter(...))``) that writes
    each scalar to TensorBoard event files under ``tensorboard`` (a run per job and node,
    ``JOB/NODE``, tagged ``TRAINING/Loss`` as Fed-BioMed's Monitor tags them), to ``csv`` and
    to ``jsonl``. Raises OSError if a file cannot be written."""
    def __init__(
        self,
        tensorboard: Optional[Union[str, os.PathLike]] = None,
        csv: Optional[Union[str, os.PathLike]] = None,
        jsonl: Optional[Union[str, os.PathLike]] = None,
    ) -> None: ...
    def __call__(self, message: Dict[str, Any]) -> None:
        """Writes one ``add_scalar`` message; ValueError for any other."""

class Federation:
    """A file repository and ``nodes`` fedreq nodes ("node-1"...) in this process, on the
    embedded MQTT broker, the broker at ``broker``, or the in-memory broker
    (transport="memory"). Each node holds ``datasets``, else a few simulated ones tagged "fbm".
    With ``presence=False`` the nodes announce nothing, as Fed-BioMed v4.4's."""

    def __init__(
        self,
        nodes: int = 3,
        *,
        transport: str = "mqtt",
        broker: Optional[str] = None,
        datasets: Optional[List[Dict[str, Any]]] = None,
        presence: bool = True,
    ) -> None: ...
    @property
    def broker(self) -> Optional[str]:
        """The MQTT broker's "HOST:PORT", None on the in-memory broker."""
    @property
    def uploads_url(self) -> str:
        """The file repository's upload URL."""
    @property
    def node_ids(self) -> List[str]:
        """Every node's id."""
    def requests(
        self,
        researcher_id: Optional[str] = None,
        timeout: Optional[float] = None,
        *,
        compat: bool = False,
        min_replies: Optional[int] = None,
        grace: float = 0.0,
        deadline: Optional[float] = None,
        uploads_url: Optional[str] = None,
    ) -> Requests:
        """A ``Requests`` to this federation, uploading to its repository unless
        ``uploads_url`` says otherwise."""
    def stop_node(self, node_id: str) -> None:
        """Stops a node; it announces that it goes offline."""
    def close(self) -> None:
        """Stops every node."""
    def __enter__(self) -> "Federation": ...
    def __exit__(self, *args: Any) -> None: ...
