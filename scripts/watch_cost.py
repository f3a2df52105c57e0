"""What `fedreq watch` costs: 1,000 nodes and 100 scalars a second for ten minutes, with the
page open in headless chromium. Prints the watch process's CPU time and memory each minute.

    target/python-venv/bin/python scripts/watch_cost.py [--minutes 10] [--nodes 1000] [--rate 100]
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import fedreq

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def usage(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss / 2**20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100)
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    fedreq_bin = ROOT / "target/release/fedreq"
    port = 18000 + os.getpid() % 1000
    broker = f"127.0.0.1:{port}"
    datasets = Path(f"/tmp/watch-cost-datasets-{os.getpid()}.json")
    datasets.write_text('[{"name": "t", "data_type": "csv", "tags": ["fbm"], "description": "",'
                        ' "shape": [10, 2], "dataset_id": "d"}]')
    # mosquitto in its default configuration: the embedded broker takes 1,000 connections at most.
    config = Path(f"/tmp/watch-cost-mosquitto-{os.getpid()}.conf")
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    helpers = [subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(config)], stderr=subprocess.DEVNULL)]
    time.sleep(0.5)
    helpers.append(subprocess.Popen([fedreq_bin, "node", "--broker", broker, "--id", "node", "--count", str(args.nodes),
                                     "--simulate-training", "--datasets", str(datasets)], stderr=subprocess.DEVNULL))
    time.sleep(3)
    watch = subprocess.Popen([fedreq_bin, "--broker", broker, "--researcher-id", "watcher", "watch"],
                             stdout=subprocess.PIPE, text=True)
    helpers.append(watch)
    url = watch.stdout.readline().strip()
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    browser.get(url)
    requests = fedreq.Requests(broker=broker, researcher_id="watcher")
    nodes = [f"node-{i}" for i in range(1, args.nodes + 1)]
    print(f"{len(requests.ping_nodes())} nodes online", flush=True)
    train = {"command": "train", "job_id": "cost", "params_url": "", "training_args": {}, "dataset_id": "d",
             "training": True, "model_args": {}, "training_plan_url": "", "training_plan_class": "P",
             "aggregator_args": {}, "secagg_servkey_id": None, "secagg_biprime_id": None,
             "secagg_random": None, "secagg_clipping_range": None}
    start, sent, minute = time.monotonic(), 0, 1
    print(f"{args.nodes} nodes, {args.rate:g} scalars/s; watch pid {watch.pid}", flush=True)
    while (elapsed := time.monotonic() - start) < args.minutes * 60:
        if sent < elapsed * args.rate:
            # Each simulated train answers with one Loss scalar.
            node = nodes[sent % len(nodes)]
            requests.send_message({**train, "round": sent}, node)
            sent += 1
        else:
            requests.get_responses(["train"])
            time.sleep(0.005)
        if elapsed >= minute * 60:
            cpu, rss = usage(watch.pid)
            print(f"{minute:3d} min: {sent} trains sent; watch CPU {cpu:.1f} s ({100 * cpu / elapsed:.1f} %), RSS {rss:.1f} MiB", flush=True)
            minute += 1
    cpu, rss = usage(watch.pid)
    print(f"end: {sent} trains in {elapsed:.0f} s; watch CPU {cpu:.1f} s ({100 * cpu / elapsed:.1f} % of a core), RSS {rss:.1f} MiB")
    points = browser.execute_script("return [...document.querySelectorAll('#charts .chart')].map(c => +c.dataset.points).reduce((a, b) => a + b, 0)")
    print(f"the page holds {points} points in its charts")
    browser.quit()
    for helper in helpers:
        helper.terminate()


if __name__ == "__main__":
    sys.exit(main())
