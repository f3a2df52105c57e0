"""What the Python layer costs: the same ping from Python and from Rust, in one run, and how
soon Ctrl-C ends a waiting request.

    python python/bench.py [--runs 2000] [--nodes 10] [--broker HOST:PORT]

over the in-memory broker, the embedded MQTT broker and, with --broker, the broker given.

Build the module in release first (`pip install ./python`, or `maturin develop --release`).
"""

import argparse
import os
import signal
import statistics
import threading
import time

import fedreq


def pings(requests, runs, block=100):
    """Python's and Rust's ping times, in alternating blocks so drift hits both alike."""
    python, rust = [], []
    while len(python) < runs:
        for _ in range(block):
            started = time.perf_counter()
            requests.ping_nodes()
            python.append(time.perf_counter() - started)
        rust.extend(requests._ping_times(block))
    return python, rust


def interrupt_latency(requests, trials):
    """Seconds from SIGINT to KeyboardInterrupt in a waiting request."""
    latencies = []
    for trial in range(trials):
        sent = []

        def interrupt():
            sent.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)

        timer = threading.Timer(0.05 + 0.013 * trial, interrupt)
        timer.start()
        try:
            requests.get_messages(time=30)
        except KeyboardInterrupt:
            latencies.append(time.perf_counter() - sent[0])
        timer.join()
    return latencies


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--broker", help="also measure the MQTT broker at HOST:PORT (e.g. mosquitto)")
    args = parser.parse_args()
    setups = {"memory": {"transport": "memory"}, "embedded": {}}
    if args.broker:
        setups[args.broker] = {"broker": args.broker}
    print(f"{'broker':<16} {'nodes':>5} {'runs':>5} {'rust p50 ms':>12} {'python p50 ms':>14} {'added us':>9}")
    for transport, setup in setups.items():
        with fedreq.Federation(args.nodes, **setup) as federation:
            requests = federation.requests(timeout=5)
            pings(requests, 200)  # warm up
            python, rust = pings(requests, args.runs)
            p_py, p_rs = statistics.median(python), statistics.median(rust)
            print(f"{transport:<16} {args.nodes:>5} {len(python):>5} {p_rs * 1e3:>12.4f} {p_py * 1e3:>14.4f} {(p_py - p_rs) * 1e6:>9.1f}")
    with fedreq.Federation(1, transport="memory") as federation:
        latencies = interrupt_latency(federation.requests(timeout=5), 20)
    print(f"Ctrl-C to KeyboardInterrupt, {len(latencies)} trials: "
          f"median {statistics.median(latencies) * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
