"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the samples are, by function and by package.

    python -m opsramp_sandbox.bench.profile_summary bench/profile/operator-main.txt [--top 25] [--idle]

Idle threads (waiting in a selector, a lock or a queue) are left out unless --idle is given, so the tables
show what used the CPU.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_IDLE = re.compile(r"\b(select|poll|epoll|wait|_wait_for_tstate_lock|acquire|sleep|get|_worker)\b \(")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def package_of(path: str) -> str:
    """The top-level package (or stdlib module) of a source path."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for root in ("opsramp_aws_operator", "opsramp_sandbox"):
        if f"/{root}/" in path:
            return root
    if "/lib/python3" in path:
        return "stdlib:" + path.rsplit("/lib/python3", 1)[1].split("/", 2)[1].removesuffix(".py")
    return path or "?"


def summarise(text: str, *, top: int, idle: bool) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if not idle and _IDLE.search(leaf) and "opsramp" not in leaf:
            continue
        count = int(count_text)
        total += count
        self_time[leaf] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
        match = _FRAME.match(leaf)
        packages[package_of(match["file"] if match else leaf)] += count
    if not total:
        return "no samples"
    out = [f"{total} samples (busy only)" if not idle else f"{total} samples"]
    out += ["", "self time by package:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in packages.most_common(top)]
    out += ["", "self time by function:"]
    out += [f"  {n / total:6.1%}  {name[:150]}" for name, n in self_time.most_common(top)]
    ours = [(f, n) for f, n in inclusive.most_common() if "opsramp_aws_operator" in f or "kopf" in f]
    out += ["", "inclusive time, operator and kopf frames:"]
    out += [f"  {n / total:6.1%}  {name[:150]}" for name, n in ours[:top]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opsramp_sandbox.bench.profile_summary", description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--idle", action="store_true", help="keep idle samples")
    args = parser.parse_args(argv)
    print(summarise(args.profile.read_text(), top=args.top, idle=args.idle))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
