"""Benchmark: latency of the Kubernetes emulator per block of 1,000 requests, to show it stays flat."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import requests

from .kube import KubeEmulator

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "benches.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "benches", "singular": "bench", "kind": "Bench"},
        "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                          "spec": {"type": "object", "properties": {"n": {"type": "integer"}}},
                          "status": {"type": "object", "properties": {"seen": {"type": "integer"}}}}}}}],
    },
}  # fmt: skip
MERGE = {"Content-Type": "application/merge-patch+json"}


def run(total: int = 5000, block: int = 1000, keep: int = 200) -> list[tuple[int, float, float]]:
    """Issue `total` requests (create/get/patch/status/list/delete, `keep` objects kept alive).

    Returns (requests so far, p50 ms, p99 ms) per block.
    """
    results: list[tuple[int, float, float]] = []
    with KubeEmulator(crds=[CRD]) as emulator:
        http = requests.Session()
        base = f"{emulator.url}/apis/example.com/v1/namespaces/default/benches"
        latencies: list[float] = []
        counter = 0

        def timed(call: Callable[[], requests.Response]) -> None:
            nonlocal counter
            start = time.perf_counter()
            response = call()
            latencies.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
            counter += 1
            if counter % block == 0:
                ordered = sorted(latencies)
                p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
                results.append((counter, statistics.median(ordered), p99))
                latencies.clear()

        index = 0
        while counter < total:
            name = f"b{index}"
            body = {"apiVersion": "example.com/v1", "kind": "Bench", "metadata": {"name": name}, "spec": {"n": 1}}
            steps: list[Callable[[], requests.Response]] = [
                partial(http.post, base, json=body, timeout=10),
                partial(http.get, f"{base}/{name}", timeout=10),
                partial(http.patch, f"{base}/{name}", data='{"spec":{"n":2}}', headers=MERGE, timeout=10),
                partial(http.patch, f"{base}/{name}/status", data='{"status":{"seen":2}}', headers=MERGE, timeout=10),
                partial(http.get, base, params={"limit": "50"}, timeout=10),
            ]
            if index >= keep:
                steps.append(partial(http.delete, f"{base}/b{index - keep}", timeout=10))
            for step in steps:
                if counter < total:
                    timed(step)
            index += 1
    return results


def main(argv: list[str] | None = None) -> int:
    """Print p50/p99 per block; no pass/fail, figures only."""
    parser = argparse.ArgumentParser(prog="python -m opsramp_sandbox.bench_kube", description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--block", type=int, default=1000)
    args = parser.parse_args(argv)
    print(f"{'requests':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for done, p50, p99 in run(args.requests, args.block):
        print(f"{done:>9} {p50:>8.2f} {p99:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
