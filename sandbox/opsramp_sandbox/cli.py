"""Console entry point `opsramp-sandbox` (up / status / down), filled in by the sandbox issue."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("opsramp-sandbox: not implemented yet", file=sys.stderr)
    return 2
