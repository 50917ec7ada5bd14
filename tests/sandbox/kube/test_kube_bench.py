"""The latency benchmark runs and reports one figure pair per block (figures are printed, never asserted)."""

from __future__ import annotations

import pytest

from opsramp_sandbox import bench_kube
from opsramp_sandbox.kube import KubeEmulator


def test_bench_reports_each_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """A short run yields one (count, p50, p99) per block, and the emulator served exactly the requests timed."""
    served: list[KubeEmulator] = []

    class Recorded(KubeEmulator):
        def start(self) -> None:
            served.append(self)
            super().start()

    monkeypatch.setattr(bench_kube, "KubeEmulator", Recorded)
    results = bench_kube.run(total=300, block=100, keep=20)
    print("\n".join(f"{n:>5} requests  p50 {p50:.2f} ms  p99 {p99:.2f} ms" for n, p50, p99 in results))
    assert [n for n, _, _ in results] == [100, 200, 300]
    (emulator,) = served
    counts = {(verb, resource): n for (verb, resource, _), n in emulator.server.request_counts.items()}
    print(counts)
    assert sum(counts.values()) == 300
    # The documented mix: objects created, read and listed, patched (spec and status), the oldest deleted.
    assert set(counts) == {
        ("create", "benches"),
        ("get", "benches"),
        ("patch", "benches"),
        ("patch", "benches/status"),
        ("delete", "benches"),
    }
