"""Console entry point `opsramp-sandbox`: `up`, `status` and `down` for a sandbox living in a directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import launcher


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one subcommand; exit 0 on success."""
    parser = argparse.ArgumentParser(prog="opsramp-sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the sandbox and write DIR/env")
    up.add_argument("--dir", required=True, type=Path)
    up.add_argument("--no-operator", action="store_true", help="do not start the operator")
    up.add_argument("--crds", type=Path, help="directory of CRD YAML files (default: the project's crds/)")
    up.add_argument(
        "--kube",
        choices=launcher.KUBE_CHOICES,
        help="emulator: the project's Kubernetes emulator (Python only, a second to start); real: etcd, "
        "kube-apiserver and kube-controller-manager built from source (built first, for many minutes, when the cache "
        "has none); auto: real when already built, else the emulator, never a build "
        f"(default: ${launcher.KUBE_ENV}, else auto)",
    )
    for name, text in (("status", "say what runs"), ("down", "stop everything `up` started")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            # First, before any wait: which Kubernetes, and why (a build of many minutes is announced, never silent).
            print(launcher.choose_kube(args.kube or launcher.default_kube())[1], flush=True)
            values = launcher.up(args.dir, operator=not args.no_operator, crd_dir=args.crds, kube=args.kube)
            print(f"sandbox up in {args.dir.resolve()}; source {args.dir.resolve() / launcher.ENV_FILE}")
            for key in ("SANDBOX_KUBE", "KUBECONFIG", "AWS_ENDPOINT_URL", "OPSRAMP_ENDPOINT", "OPSRAMP_ADMIN_URL"):
                print(f"  {key}={values[key]}")
            ok, lines = launcher.status(args.dir)
            print("\n".join(lines))
            return 0
        if args.command == "status":
            ok, lines = launcher.status(args.dir)
            print("\n".join(lines))
            return 0 if ok else 1
        stopped = launcher.down(args.dir)
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    except launcher.LauncherError as exc:
        print(f"opsramp-sandbox: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
