"""Fetch `promtool` and `prometheus` from Debian's `prometheus` package into `<tools>/prometheus/`, checked by digest.

The chart's alerting rules are tested with `promtool test rules`, and the benchmark can record the operator's
metrics with a real Prometheus server for the dashboard's pictures. Debian ships both binaries in one package; we
`apt-get download` it (no install: nothing of the system changes, only apt's own lists if they must be fetched
first), check the package's sha256, unpack it with `dpkg-deb -x` and check each binary's sha256. A version or digest
bump here fetches again.

    python -m opsramp_sandbox.promtools      # prints the path of promtool (fetching it if needed)
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from .tools import _locked, tools_dir

PACKAGE: Final = "prometheus"
VERSION: Final = "2.42.0+ds-5+deb12u1"
PACKAGE_SHA256: Final = "81d59a24fce84f7fbe97a45a4f2914b6a5881b5cd1db2a6a0e129e515e1a5f55"
BINARY_SHA256: Final = {
    "promtool": "14d9c8acdc5d1321dc2092400111c586f09ac350f23f2383d1679b2bf256e583",
    "prometheus": "814f078f68af9ad7b644fd25299211399c8f19ad9adf8b0a1b86a3bd9755baa0",
}
STAMP_NAME: Final = ".source"


class PromToolsError(RuntimeError):
    """The package could not be fetched or did not match its digest; the message says which."""


def ensure_promtool() -> Path:
    return _ensure()["promtool"]


def ensure_prometheus() -> Path:
    return _ensure()["prometheus"]


def _dir() -> Path:
    return tools_dir() / "prometheus"


def stamp_text() -> str:
    return "\n".join([f"{PACKAGE}={VERSION} {PACKAGE_SHA256}", *(f"{n} {d}" for n, d in BINARY_SHA256.items())]) + "\n"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _ensure() -> dict[str, Path]:
    target = _dir()
    paths = {name: target / name for name in BINARY_SHA256}
    stamp = target / STAMP_NAME
    if stamp.exists() and stamp.read_text() == stamp_text() and all(p.exists() for p in paths.values()):
        return paths
    target.mkdir(parents=True, exist_ok=True)
    with _locked(target / ".lock"):
        if stamp.exists() and stamp.read_text() == stamp_text() and all(p.exists() for p in paths.values()):
            return paths
        stamp.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix="promtools-") as scratch:
            deb = _download(Path(scratch))
            actual = _sha256(deb)
            if actual != PACKAGE_SHA256:
                raise PromToolsError(f"{deb.name}: sha256 {actual}, expected {PACKAGE_SHA256}")
            unpacked = Path(scratch) / "root"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True, capture_output=True)
            for name, expected in BINARY_SHA256.items():
                source = unpacked / "usr" / "bin" / name
                actual = _sha256(source)
                if actual != expected:
                    raise PromToolsError(f"{name} from {PACKAGE} {VERSION}: sha256 {actual}, expected {expected}")
                shutil.copy2(source, paths[name])
                paths[name].chmod(0o755)
        stamp.write_text(stamp_text())
    return paths


def _download(dest: Path) -> Path:
    """`apt-get download prometheus=VERSION` into dest; with apt's lists fetched first when they lack it."""
    command = ["apt-get", "download", "-q", f"{PACKAGE}={VERSION}"]
    result = subprocess.run(command, cwd=dest, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, check=False)
        result = subprocess.run(command, cwd=dest, capture_output=True, text=True, check=False)
    found = sorted(dest.glob(f"{PACKAGE}_*.deb"))
    if result.returncode != 0 or not found:
        raise PromToolsError(f"apt-get download {PACKAGE}={VERSION} failed: {result.stderr.strip()[-500:]}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(ensure_prometheus() if args[:1] == ["prometheus"] else ensure_promtool())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
