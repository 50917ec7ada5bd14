"""kopf's login and the operator's own Kubernetes client load the kubeconfig one at a time.

Found by `make chaos` (a restarted operator died at startup): the kubernetes client writes an inline CA
(`certificate-authority-data`) to a temporary file that it names in a process-wide cache before writing it. A
second load in another thread meanwhile takes the cached name of the still-empty file; kopf's login built its TLS
context from it and the operator exited with "[X509: NO_CERTIFICATE_OR_CRL_FOUND]".

The test holds the first load (the operator's `core_api`) between naming the file and writing it, runs kopf's login
then, and builds the TLS context kopf would from what the login returned. Real kubernetes client, real kopf, a real
kubeconfig with an inline CA; the only thing added is the pause that makes the race happen every time.
"""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf._core.intents.causes import Activity  # kopf has no public name for it; the test reads its registry
from kubernetes.config import kube_config

from opsramp_aws_operator import handlers, kube
from opsramp_aws_operator.settings import Settings
from opsramp_sandbox.realkube import generate_pki, kubeconfig_text, write_private

HOLD_SECONDS = 3.0


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    pki = generate_pki(tmp_path / "pki")
    path = write_private(
        tmp_path / "kubeconfig", kubeconfig_text("https://127.0.0.1:1", pki.ca, user="someone", token="t0ken")
    )
    # The client reads KUBECONFIG once, when imported; the operator process has it set before that.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # A fresh process as far as the client's caches go: no client yet, no CA file written yet.
    monkeypatch.setattr(kube, "_api", None)
    monkeypatch.setattr(kube_config, "_temp_files", {})
    yield path


def test_kopf_login_during_the_operators_own_config_load_gets_a_usable_ca(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = threading.Event()  # the first load has named the CA file and is about to write it
    login_done = threading.Event()
    real_open = builtins.open

    def held_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        # The client's write of a cached temporary file: hold it until the login has run (or HOLD_SECONDS passed).
        if mode == "wb" and str(file) in kube_config._temp_files.values() and not named.is_set():
            named.set()
            login_done.wait(HOLD_SECONDS)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(kube_config, "open", held_open, raising=False)

    first = threading.Thread(target=kube.core_api, daemon=True)
    first.start()
    assert named.wait(30), "the operator's client never wrote its CA file"
    results: dict[str, Any] = {}

    def login() -> None:
        try:
            info = kube.login(logger=logging.getLogger("test"), settings=kopf.OperatorSettings())
            results["info"] = info
            # What kopf does with it before its first request, while the first load may still be unfinished; with
            # the cached name of an empty CA file this raised ssl.SSLError.
            results["context"] = info.as_ssl_context() if info is not None else None
        except Exception as exc:
            results["error"] = exc
        finally:
            login_done.set()

    second = threading.Thread(target=login, daemon=True)
    second.start()
    second.join(30)
    first.join(30)
    assert "error" not in results, results.get("error")
    assert results["info"] is not None and results["info"].server == "https://127.0.0.1:1"
    assert results["context"].cert_store_stats()["x509_ca"] == 1


def test_the_operator_logs_in_through_the_serialised_login() -> None:
    """The registry the operator runs with authenticates with `kube.login`, not kopf's unguarded one."""
    registry = kopf.OperatorRegistry()
    handlers.register(registry, Settings.from_env({"OPERATOR_OPSRAMP_AWS_ACCOUNT_ID": "123456789012"}))
    logins = [h.fn for h in registry._activities.get_handlers(activity=Activity.AUTHENTICATION)]
    assert logins == [kube.login]
