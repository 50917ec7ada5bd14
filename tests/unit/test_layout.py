"""Guards on the repository layout that would otherwise break in confusing ways."""

from __future__ import annotations

import operator as stdlib_operator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_source_root_is_not_a_package() -> None:
    """operator/ has no __init__.py: a package named `operator` would shadow the standard library."""
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert not (ROOT / "sandbox" / "__init__.py").exists()


def test_stdlib_operator_is_the_real_one() -> None:
    """`import operator` still gives the standard library module with our source root on sys.path."""
    assert hasattr(stdlib_operator, "itemgetter")
    assert "site-packages" not in (stdlib_operator.__file__ or "/lib/")


def test_build_time_generators_stay_out_of_the_runtime_package() -> None:
    """The generators run by `make crds` live in codegen/, and nothing the image ships imports them."""
    package = ROOT / "operator" / "opsramp_aws_operator"
    for generator in ("crdgen.py", "refdoc.py", "iam_permissions.py"):
        assert not (package / generator).exists(), f"{generator} belongs in codegen/opsramp_codegen/"
        assert (ROOT / "codegen" / "opsramp_codegen" / generator).exists()
    importers = [p.name for p in package.rglob("*.py") if "opsramp_codegen" in p.read_text()]
    assert importers == [], f"runtime modules import the build-time generators: {importers}"


def test_each_external_sdk_is_imported_by_its_adapter_only() -> None:
    """boto3/botocore only in aws.py, requests only in the opsramp/ package: one place turns SDK errors into ours."""
    package = ROOT / "operator" / "opsramp_aws_operator"
    for path in package.rglob("*.py"):
        imports = {
            line.split()[1].split(".")[0]
            for line in path.read_text().splitlines()
            if line.startswith(("import ", "from ")) and len(line.split()) > 1
        }
        relative = path.relative_to(package).as_posix()
        if imports & {"boto3", "botocore"}:
            assert relative == "aws.py", f"{relative} imports boto3/botocore"
        if "requests" in imports:
            assert relative.startswith("opsramp/"), f"{relative} imports requests"
