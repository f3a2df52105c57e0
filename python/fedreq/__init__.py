"""fedreq: the researcher-to-nodes request layer of federated learning, speaking Fed-BioMed
v4.4's protocol over MQTT, with a Rust core.

- ``Requests``: every operation of Fed-BioMed v4.4's ``Requests`` (ping, list, search,
  training plan approval, any message and its replies, monitoring), with v4.4's names.
- ``Federation``: a broker, a file repository and nodes in this process, for tutorials and tests.
- ``Responses``: v4.4's container of replies.
- ``ScalarWriter``: a monitor callback writing scalars as TensorBoard event files, CSV or
  JSON lines, where Fed-BioMed's Monitor is not there.
- ``fedreq.fedbiomed``: the drop-in for v4.4 code (``Requests(mess=None)``, a singleton).

Node logs and fedreq's own lines go to Python's ``logging`` (loggers ``fedreq.node``,
``fedreq.requests``); every error is a ``fedreq.Error``.
"""

from ._native import (
    DEFAULT_UPLOADS_URL,
    ConnectError,
    Error,
    Federation,
    MessageError,
    Requests,
    ScalarWriter,
    TrainingPlanError,
    UploadError,
)
from .responses import Responses

__all__ = [
    "DEFAULT_UPLOADS_URL",
    "ConnectError",
    "Error",
    "Federation",
    "MessageError",
    "Requests",
    "Responses",
    "ScalarWriter",
    "TrainingPlanError",
    "UploadError",
]
