"""`python -m opsramp_sandbox.kube`: run the Kubernetes API emulator as a process and print READY <url>."""

from __future__ import annotations

import argparse
import signal
import threading

from . import KubeEmulator, load_crds


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m opsramp_sandbox.kube", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this server here")
    parser.add_argument("--crd", action="append", default=[], help="CRD YAML file to register at start")
    parser.add_argument("--bookmark-interval", type=float, default=5.0, help="seconds between watch bookmarks")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator = KubeEmulator(
        host=args.host, port=args.port, crds=load_crds(args.crd), bookmark_interval=args.bookmark_interval
    )
    emulator.start()
    try:
        if args.kubeconfig:
            emulator.write_kubeconfig(args.kubeconfig)
        print(f"READY {emulator.url}", flush=True)
        stop.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
