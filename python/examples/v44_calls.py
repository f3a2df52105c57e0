"""The calls Fed-BioMed v4.4's Experiment and Job make on Requests, answered by the drop-in
over a federation in this process. Run from the repository's root:

    python python/examples/v44_calls.py
"""

import os

from fedreq import Federation

federation = Federation(3)
host, port = federation.broker.rsplit(":", 1)
os.environ.update(
    MQTT_BROKER=host,
    MQTT_BROKER_PORT=port,
    RESEARCHER_ID="researcher-demo",
    UPLOADS_URL=federation.uploads_url,
)
from fedreq.fedbiomed import Requests  # noqa: E402 (configured from the variables above)

reqs = Requests()
print("Requests() is Requests():", Requests() is reqs)

# Experiment: the federated dataset comes from a search; the Monitor takes the scalars.
found = reqs.search(("fbm",), None)
print("search:", {node: [d["dataset_id"] for d in datasets] for node, datasets in found.items()})
scalars = []
reqs.add_monitor_callback(scalars.append)
print("approve:", reqs.training_plan_approve("researcher/plans/example_plan.py", "demo", list(found), 5))

# Job: is the plan approved on each node?
for node in found:
    status_request = {"researcher_id": "researcher-demo", "job_id": "job-1",
                      "training_plan_url": "u", "command": "training-plan-status"}
    reqs.send_message(status_request, node)
statuses = reqs.get_responses(look_for_commands=["training-plan-status"], only_successful=False)
print("training-plan-status:", type(statuses).__name__,
      [(r["node_id"], r["success"], r["status"]) for r in statuses])

# Job: a training round on each node (the third one's dataset is gone), then the replies.
train = {
    "researcher_id": "researcher-demo", "job_id": "job-1", "params_url": "", "training_args": {},
    "training": True, "model_args": {}, "training_plan_url": "", "training_plan_class": "P",
    "round": 1, "aggregator_args": {}, "secagg_servkey_id": None, "secagg_biprime_id": None,
    "secagg_random": None, "secagg_clipping_range": None, "command": "train",
}
for i, node in enumerate(found):
    dataset_id = found[node][0]["dataset_id"] if i < 2 else "gone"
    reqs.send_message({**train, "dataset_id": dataset_id}, node)
replies = reqs.get_responses(look_for_commands=["train", "error"], only_successful=False)
for m in replies.data():
    print("  ", m["command"], m["node_id"], m["errnum"].value if m["command"] == "error" else m["success"])
print("get_index_from_node_id('node-2'):", replies.get_index_from_node_id("node-2"),
      "; monitor scalars:", len(scalars), scalars[0]["metric"] if scalars else None)
print("ping_nodes:", sorted(reqs.ping_nodes()), "; list:", {n: len(d) for n, d in reqs.list().items()})
