"""The latency benchmark runs and reports one figure pair per block (figures are printed, never asserted)."""

from __future__ import annotations

from opsramp_sandbox.bench_kube import run


def test_bench_reports_each_block() -> None:
    """A short run yields one (count, p50, p99) per block with every request answered."""
    results = run(total=300, block=100, keep=20)
    print("\n".join(f"{n:>5} requests  p50 {p50:.2f} ms  p99 {p99:.2f} ms" for n, p50, p99 in results))
    assert [n for n, _, _ in results] == [100, 200, 300]
    assert all(p50 <= p99 for _, p50, p99 in results)
