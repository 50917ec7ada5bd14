"""Console entry point `opsramp-aws-operator`: starts the kopf operator (filled in by the operator issue)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("opsramp-aws-operator: the operator's handlers are not wired in yet.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
