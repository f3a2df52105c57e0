"""The calls Fed-BioMed v4.4's Experiment and Job make on Requests, answered by the drop-in
over a federation in this process. Run from the repository's root:

    python python/examples/v44_calls.py
"""

import os, fedreq
from fedreq import Federation
fed = Federation(3)
host, port = fed.broker.rsplit(":", 1)
os.environ.update(MQTT_BROKER=host, MQTT_BROKER_PORT=port, RESEARCHER_ID="researcher-demo", UPLOADS_URL=fed.uploads_url)
from fedreq.fedbiomed import Requests
reqs = Requests()
print("Requests() is Requests():", Requests() is reqs)
found = reqs.search(("fbm",), None)                       # Experiment: FederatedDataSet from a search
print("search:", {n: [d["dataset_id"] for d in ds] for n, ds in found.items()})
scalars = []
reqs.add_monitor_callback(scalars.append)                 # Experiment: Monitor
print("approve:", reqs.training_plan_approve("researcher/plans/example_plan.py", "demo", list(found), 5))
for node in found:                                        # Job.check_training_plan_is_approved_by_nodes
    reqs.send_message({"researcher_id": "researcher-demo", "job_id": "job-1", "training_plan_url": "u", "command": "training-plan-status"}, node)
status = reqs.get_responses(look_for_commands=["training-plan-status"], only_successful=False)
print("training-plan-status:", type(status).__name__, [(r["node_id"], r["success"], r["status"]) for r in status])
train = {"researcher_id": "researcher-demo", "job_id": "job-1", "params_url": "", "training_args": {}, "training": True,
         "model_args": {}, "training_plan_url": "", "training_plan_class": "P", "round": 1, "aggregator_args": {},
         "secagg_servkey_id": None, "secagg_biprime_id": None, "secagg_random": None, "secagg_clipping_range": None, "command": "train"}
for i, node in enumerate(found):                          # Job.start_nodes_training_round
    reqs.send_message({**train, "dataset_id": found[node][0]["dataset_id"] if i < 2 else "gone"}, node)
replies = reqs.get_responses(look_for_commands=["train", "error"], only_successful=False)
for m in replies.data():
    print("  ", m["command"], m["node_id"], m["errnum"].value if m["command"] == "error" else m["success"])
print("get_index_from_node_id('node-2'):", replies.get_index_from_node_id("node-2"), "; monitor scalars:", len(scalars), scalars[0]["metric"] if scalars else None)
print("ping_nodes:", sorted(reqs.ping_nodes()), "; list:", {n: len(d) for n, d in reqs.list().items()})
