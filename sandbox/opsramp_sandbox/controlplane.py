"""Build etcd, kube-apiserver and kube-controller-manager from source once, into a cache outside the work tree.

The Go sources are two small modules of ours in `sandbox/controlplane/`: one requires `k8s.io/kubernetes`
(with a `replace` pinning each staging module to the matching v0.x release) and builds its two commands as Go
`tool`s; `etcd/` wraps etcd's `embed` package. Each has its own go.sum, and `go` runs with `-mod=readonly`, so
every module the build fetches is checked against a committed checksum. etcd is a module of its own because its
requirements (grpc, otel, x/net) are newer than Kubernetes': one module would build kube-apiserver with a
dependency set Kubernetes never shipped.

The binaries go to `${XDG_CACHE_HOME:-~/.cache}/opsramp-aws-operator/controlplane/<key>/bin`, where the key hashes
both modules' go.mod and go.sum, the etcd wrapper's source, the version stamps and `go version`/GOOS/GOARCH: a new
pin or a new Go gives a new directory, an unchanged one is reused. Concurrent builds (two `make test` at once)
serialise on a lock file and the second reuses the first's result.

`python -m opsramp_sandbox.controlplane build` builds (or reuses) and prints the bin directory.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SOURCE_DIR: Final = REPO_ROOT / "sandbox" / "controlplane"
ETCD_DIR: Final = SOURCE_DIR / "etcd"
KUBE_COMMANDS: Final = ("kube-apiserver", "kube-controller-manager")
BINARIES: Final = ("etcd", *KUBE_COMMANDS)
STAMP_NAME: Final = ".complete"

# Lets CI keep the cache on a volume of its own.
CACHE_ENV: Final = "OPSRAMP_CONTROLPLANE_CACHE"


class BuildError(Exception):
    """The control plane could not be built; the message says which step and quotes go's output."""


def cache_root() -> Path:
    """`$OPSRAMP_CONTROLPLANE_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/opsramp-aws-operator/controlplane`."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "opsramp-aws-operator" / "controlplane"


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("`go` is not on PATH: the real control plane is built from source and needs Go >= 1.26")
    return go


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Every module is checked against the committed go.sum; nothing may rewrite go.mod or go.sum.
    env["GOFLAGS"] = "-mod=readonly"
    return env


def _run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, env=_go_env(), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-30:])
        raise BuildError(f"`{' '.join(args)}` in {cwd} failed ({result.returncode}):\n{tail}")
    return result.stdout


def kubernetes_version() -> str:
    """The k8s.io/kubernetes version the module requires (e.g. v1.37.2), read from its go.mod."""
    for line in (SOURCE_DIR / "go.mod").read_text().splitlines():
        parts = line.split()
        if parts[:2] == ["require", "k8s.io/kubernetes"] or parts[:1] == ["k8s.io/kubernetes"]:
            index = parts.index("k8s.io/kubernetes") + 1
            return parts[index]
    raise BuildError(f"k8s.io/kubernetes is not required in {SOURCE_DIR / 'go.mod'}")


def version_ldflags(version: str) -> str:
    """The -X stamps Kubernetes' own build sets, so /version says v1.37.2 (Helm's kubeVersion check reads it)."""
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    flags = [
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in stamps.items()
    ]
    # -s -w: no symbol table or DWARF, as Kubernetes' release builds (a third smaller on disk).
    return " ".join(["-s", "-w", *flags])


def _inputs() -> list[Path]:
    return [
        SOURCE_DIR / "go.mod",
        SOURCE_DIR / "go.sum",
        ETCD_DIR / "go.mod",
        ETCD_DIR / "go.sum",
        ETCD_DIR / "main.go",
    ]


def build_key() -> str:
    """A short hash of everything that decides the binaries (sources, pins, stamps, Go version, platform)."""
    missing = [str(p) for p in _inputs() if not p.is_file()]
    if missing:
        raise BuildError(f"the control plane's Go sources are not here ({', '.join(missing)}): use a source checkout")
    digest = hashlib.sha256()
    for path in _inputs():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    go_facts = _run([_go(), "env", "GOVERSION", "GOOS", "GOARCH", "CGO_ENABLED"], SOURCE_DIR)
    digest.update(go_facts.encode())
    digest.update(version_ldflags(kubernetes_version()).encode())
    return digest.hexdigest()[:16]


def bin_dir(key: str | None = None) -> Path:
    """Where the binaries of `key` (default: the current sources) live."""
    return cache_root() / (key or build_key()) / "bin"


def _complete(directory: Path) -> bool:
    return (directory / STAMP_NAME).is_file() and all(os.access(directory / name, os.X_OK) for name in BINARIES)


def built() -> dict[str, Path] | None:
    """The binaries when they are already in the cache, else None (never builds). None too without Go."""
    try:
        directory = bin_dir()
    except BuildError:
        return None
    return {name: directory / name for name in BINARIES} if _complete(directory) else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built(*, log: bool = True) -> dict[str, Path]:
    """Return the three binaries, building them first when the cache has none for the current sources."""
    key = build_key()
    directory = bin_dir(key)
    if not _complete(directory):
        with _locked(cache_root() / f"{key}.lock"):
            if not _complete(directory):  # another build may have finished while we waited
                _build(key, directory, log=log)
    return {name: directory / name for name in BINARIES}


def _build(key: str, directory: Path, *, log: bool) -> None:
    go = _go()
    staging = cache_root() / f"{key}.building"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    started = time.monotonic()
    version = kubernetes_version()
    if log:
        print(f"building the control plane ({version}, etcd) into {directory} (first time: many minutes)", flush=True)
    kube = [go, "build", "-ldflags", version_ldflags(version), "-o", f"{staging / 'bin'}/"]
    _run([*kube, *(f"k8s.io/kubernetes/cmd/{name}" for name in KUBE_COMMANDS)], SOURCE_DIR)
    _run([go, "build", "-o", str(staging / "bin" / "etcd"), "."], ETCD_DIR)
    seconds = time.monotonic() - started
    size = sum(p.stat().st_size for p in (staging / "bin").iterdir())
    facts = {"key": key, "kubernetes": version, "seconds": round(seconds, 1), "bytes": size}
    (staging / "bin" / STAMP_NAME).write_text(json.dumps(facts) + "\n")
    shutil.rmtree(directory.parent, ignore_errors=True)
    os.replace(staging, directory.parent)  # atomic: a reader sees no directory or a complete one
    if log:
        print(f"built in {seconds:.0f}s, {size / 1e6:.0f} MB of binaries", flush=True)


def main(argv: list[str] | None = None) -> int:
    """`build` (or reuse) and print the bin directory; `path` prints it only when built (exit 1 otherwise)."""
    parser = argparse.ArgumentParser(prog="python -m opsramp_sandbox.controlplane", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("build", "path", "key"))
    args = parser.parse_args(argv)
    try:
        if args.command == "key":
            print(build_key())
            return 0
        if args.command == "path":
            found = built()
            if found is None:
                print("not built: run `make controlplane`", file=sys.stderr)
                return 1
            print(found["etcd"].parent)
            return 0
        print(ensure_built()["etcd"].parent)
        return 0
    except BuildError as exc:
        print(f"controlplane: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
