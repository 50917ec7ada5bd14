"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager built from source.

What runs (binaries from `opsramp_sandbox.controlplane`), all bound to 127.0.0.1 with certificates generated here:

- etcd (one member, data in DIR/etcd);
- kube-apiserver with RBAC authorization, the default admission plugins (ValidatingAdmissionPolicy included), a
  service-account signing key (so the TokenRequest API issues tokens) and client-certificate authentication;
- kube-controller-manager with the namespace, garbage-collector, serviceaccount and serviceaccount-token
  controllers, each under its own ServiceAccount as in kubeadm clusters.

No kubelet, scheduler or Pods: Deployments stay unscheduled. Every wait is on readiness (`/readyz`, a READY
line, an object appearing), never a sleep of a fixed length.

`python -m opsramp_sandbox.realkube --dir DIR --kubeconfig FILE [--crd FILE…] [--operator-kubeconfig FILE]` runs
one in the foreground (the launcher's `--kube real`) and prints `READY <url>` once it serves.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import controlplane, tools

LOOPBACK: Final = "127.0.0.1"
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR: Final = "10.0.0.0/24"
ADMIN_USER: Final = "sandbox-admin"
CONTROLLERS: Final = ("namespace", "garbagecollector", "serviceaccount", "serviceaccount-token")
# Generous: a first start on a loaded 2-core machine (the apiserver's post-start hooks, RBAC bootstrap) is slow.
START_TIMEOUT: Final = 180.0
STOP_TIMEOUT: Final = 10.0
# The chart's operator identity: release name == chart name, so every object is named "opsramp-aws-operator".
CHART_DIR: Final = controlplane.REPO_ROOT / "charts" / "opsramp-aws-operator"
CHART_RELEASE: Final = "opsramp-aws-operator"
OPERATOR_NAMESPACE: Final = "opsramp-system"
RBAC_KINDS: Final = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
# The operator's token lives as long as a sandbox may (TokenRequest caps it at --service-account-max-token-expiration).
TOKEN_SECONDS: Final = 48 * 3600
# Every request made by a ServiceAccount of the operator's namespace is written to DIR/audit.log (user, verb,
# resource, response code): tests read it to prove what the operator was allowed and denied.
AUDIT_POLICY: Final = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts:{OPERATOR_NAMESPACE}"]
  - level: None
"""


class ControlPlaneError(Exception):
    """The control plane did not start or answer; the message quotes the failing component's log."""


# ---- certificates --------------------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    server_names: Iterable[str] = (),
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )  # fmt: skip
    else:
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    names: list[x509.GeneralName] = []
    for name in server_names:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


@dataclass(frozen=True)
class Pki:
    """Paths of the generated certificates and keys (all in one private directory)."""

    ca: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    kcm_cert: Path
    kcm_key: Path
    sa_key: Path
    sa_pub: Path


def generate_pki(directory: Path) -> Pki:
    """A CA, the apiserver's serving certificate, client certificates for the admin and the controller manager
    (whose user names the bootstrap RBAC policy knows), and the service-account signing key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key = _key()
    ca_name = _name("opsramp-sandbox-ca")
    ca = _certificate(ca_name, ca_key)
    issuer = (ca_name, ca_key)
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]  # fmt: skip
    files: dict[str, bytes] = {"ca.crt": ca.public_bytes(serialization.Encoding.PEM)}
    leaves = {
        "serving": (_name("kube-apiserver"), {"server_names": [LOOPBACK, service_ip, *dns]}),
        # system:masters is bound to cluster-admin by the bootstrap policy.
        "admin": (_name(ADMIN_USER, "system:masters"), {"client": True}),
        # The bootstrap policy's system:kube-controller-manager role is bound to this user name.
        "kcm": (_name("system:kube-controller-manager"), {"client": True}),
    }
    for stem, (subject, options) in leaves.items():
        key = _key()
        cert = _certificate(subject, key, issuer, **options)  # type: ignore[arg-type]
        files[f"{stem}.crt"] = cert.public_bytes(serialization.Encoding.PEM)
        files[f"{stem}.key"] = _pem_key(key)
    sa_key = _key()
    files["sa.key"] = _pem_key(sa_key)
    files["sa.pub"] = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for name, content in files.items():
        path = directory / name
        path.touch(mode=0o600)
        path.write_bytes(content)
    return Pki(
        ca=directory / "ca.crt",
        serving_cert=directory / "serving.crt",
        serving_key=directory / "serving.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        kcm_cert=directory / "kcm.crt",
        kcm_key=directory / "kcm.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )


def kubeconfig_text(
    url: str, ca: Path, *, user: str, cert: Path | None = None, key: Path | None = None, token: str | None = None
) -> str:
    """A one-context kubeconfig with the CA and either a client certificate or a bearer token embedded."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    credentials: dict[str, str] = {}
    if cert is not None and key is not None:
        credentials = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    if token is not None:
        credentials = {"token": token}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": url, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "sandbox", "user": user}}],
        "current-context": user,
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` readable by the owner only (kubeconfigs carry keys and tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
    return path


# ---- processes ---------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the process that started us dies, so a killed test run leaks nothing.

    (Linux ties this to the thread that forked: start a ControlPlane from a thread that outlives it, e.g. the main one.)
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in DIR; `start()`, `stop()`, admin and token kubeconfigs."""

    def __init__(self, directory: Path, *, binaries: dict[str, Path] | None = None) -> None:
        self.directory = directory.resolve()
        self.binaries = binaries
        self.url = ""
        self.etcd_url = ""
        self.pki: Pki | None = None
        self.admin_kubeconfig = self.directory / "admin.kubeconfig"
        self.audit_log = self.directory / "audit.log"
        self._processes: dict[str, _Process] = {}
        self._apiserver_port = 0

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self, *, crds: Iterable[dict[str, Any]] = (), timeout: float = START_TIMEOUT) -> ControlPlane:
        """Start all three and return once the apiserver is ready, `crds` are Established and the controller
        manager acts. CRDs go in before the controller manager starts, so the garbage collector watches their
        kinds from its first discovery instead of after its next 30-second resync."""
        deadline = time.monotonic() + timeout
        if self.binaries is None:
            found = controlplane.built()
            if found is None:
                raise ControlPlaneError("the control-plane binaries are not built: run `make controlplane`")
            self.binaries = found
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        self.pki = generate_pki(self.directory / "pki")
        try:
            self._start_etcd(deadline)
            self._start_apiserver(deadline)
            write_private(
                self.admin_kubeconfig,
                kubeconfig_text(self.url, self.pki.ca, user=ADMIN_USER, cert=self.pki.admin_cert,
                                key=self.pki.admin_key),
            )  # fmt: skip
            for crd in crds:
                self.apply_crd(crd, deadline=deadline)
            self._start_controller_manager(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the controller manager, the apiserver and etcd (in that order)."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            process = self._processes.pop(name, None)
            if process is not None:
                process.stop()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def running(self) -> dict[str, bool]:
        """Whether each started process is alive."""
        return {name: process.alive() for name, process in self._processes.items()}

    def restart_apiserver(self, timeout: float = START_TIMEOUT) -> None:
        """Stop kube-apiserver and start it again on the same port and etcd: every watch stream ends, as on an
        apiserver rollout, and resourceVersions carry on."""
        self._processes.pop("kube-apiserver").stop()
        self._start_apiserver(time.monotonic() + timeout, port=self._apiserver_port)

    def _spawn(self, name: str, args: list[str]) -> _Process:
        log = self.directory / "logs" / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.directory,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
            )  # fmt: skip
        process = _Process(name, popen, log)
        self._processes[name] = process
        return process

    def _binary(self, name: str) -> str:
        assert self.binaries is not None
        return str(self.binaries[name])

    def _start_etcd(self, deadline: float) -> None:
        data = self.directory / "etcd"
        data.mkdir(mode=0o700, exist_ok=True)
        # No fsync: throwaway test data on a busy shared disk; a crash of the machine loses nothing we keep.
        process = self._spawn("etcd", [self._binary("etcd"), "--data-dir", str(data), "--unsafe-no-fsync"])
        while time.monotonic() < deadline:
            for line in process.log.read_text(errors="replace").splitlines():
                if line.startswith("READY "):
                    self.etcd_url = line.split(" ", 1)[1].strip()
                    return
            if not process.alive():
                raise ControlPlaneError(f"etcd exited with code {process.popen.returncode}:\n{process.tail()}")
            time.sleep(0.05)
        raise ControlPlaneError(f"etcd printed no READY line in time:\n{process.tail()}")

    def _apiserver_args(self, port: int) -> list[str]:
        assert self.pki is not None
        pki = self.pki
        policy = self.directory / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        return [
            self._binary("kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--cert-dir={self.directory / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca}",
            "--authorization-mode=RBAC",
            # The default admission plugins (NamespaceLifecycle, ServiceAccount, ValidatingAdmissionPolicy, the
            # webhooks, ResourceQuota, ...) stay as the release ships them: no --enable/--disable-admission-plugins.
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-account-max-token-expiration={TOKEN_SECONDS}s",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # No kubelets, so nothing could answer for the `kubernetes` Service's endpoint (127.0.0.1 is refused).
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
        ]

    def _start_apiserver(self, deadline: float, *, port: int = 0) -> None:
        attempts = 0
        while True:
            attempts += 1
            chosen = port or _free_port()
            process = self._spawn("kube-apiserver", self._apiserver_args(chosen))
            self.url = f"https://{LOOPBACK}:{chosen}"
            try:
                self._wait_ready(process, deadline)
            except ControlPlaneError:
                # The port picked was free when probed; another process may have bound it before us.
                if port == 0 and attempts < 3 and "address already in use" in process.tail(200):
                    process.stop()
                    continue
                raise
            self._apiserver_port = chosen
            return

    def _wait_ready(self, process: _Process, deadline: float) -> None:
        session = self.session()
        last = ""
        while time.monotonic() < deadline:
            if not process.alive():
                raise ControlPlaneError(
                    f"kube-apiserver exited with code {process.popen.returncode}:\n{process.tail()}"
                )
            try:
                response = session.get(f"{self.url}/readyz", timeout=5)
                # /readyz covers the post-start hooks; the bootstrap controller makes `default` right after.
                default = f"{self.url}/api/v1/namespaces/default"
                if response.status_code == 200 and session.get(default, timeout=5).status_code == 200:
                    return
                last = f"/readyz {response.status_code}: {response.text[-300:]}"
            except requests.RequestException as exc:
                last = str(exc)
            time.sleep(0.1)
        raise ControlPlaneError(f"kube-apiserver not ready in time ({last}):\n{process.tail()}")

    def _start_controller_manager(self, deadline: float) -> None:
        assert self.pki is not None
        kubeconfig = write_private(
            self.directory / "kcm.kubeconfig",
            kubeconfig_text(self.url, self.pki.ca, user="system:kube-controller-manager", cert=self.pki.kcm_cert,
                            key=self.pki.kcm_key),
        )  # fmt: skip
        process = self._spawn(
            "kube-controller-manager",
            [
                self._binary("kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                # Each controller under its own ServiceAccount and bootstrap role, as kubeadm runs it.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--root-ca-file={self.pki.ca}",
                "--leader-elect=false",
                # No HTTPS endpoint of its own: a fixed port would collide with a second sandbox.
                "--secure-port=0",
                "--profiling=false",
            ],
        )
        # It is acting once the serviceaccount controller has made `default` in the `default` namespace.
        session = self.session()
        url = f"{self.url}/api/v1/namespaces/default/serviceaccounts/default"
        while time.monotonic() < deadline:
            if not process.alive():
                raise ControlPlaneError(
                    f"kube-controller-manager exited with code {process.popen.returncode}:\n{process.tail()}"
                )
            with contextlib.suppress(requests.RequestException):
                if session.get(url, timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise ControlPlaneError(f"kube-controller-manager did not act in time:\n{process.tail()}")

    # -- clients ------------------------------------------------------------------------------------------------

    def session(self) -> requests.Session:
        """A requests session authenticated as the admin (system:masters)."""
        assert self.pki is not None
        session = requests.Session()
        # Else REQUESTS_CA_BUNDLE from the environment replaces our CA, and a proxy variable could route loopback.
        session.trust_env = False
        session.cert = (str(self.pki.admin_cert), str(self.pki.admin_key))
        session.verify = str(self.pki.ca)
        return session

    def write_kubeconfig(
        self, path: Path, *, token: str | None = None, user: str = ADMIN_USER, server: str | None = None
    ) -> Path:
        """A kubeconfig for the admin (client certificate) or, with `token`, for whoever the token names;
        `server` replaces the apiserver's URL (e.g. a ConnectionCutter's)."""
        assert self.pki is not None
        url = server or self.url
        if token is not None:
            return write_private(path, kubeconfig_text(url, self.pki.ca, user=user, token=token))
        text = kubeconfig_text(url, self.pki.ca, user=ADMIN_USER, cert=self.pki.admin_cert, key=self.pki.admin_key)
        return write_private(path, text)

    def request(self, method: str, path: str, body: Any = None, *, ok: Iterable[int] = (200, 201)) -> Any:
        """One admin request; raises ControlPlaneError unless the status is in `ok`."""
        response = self.session().request(method, f"{self.url}{path}", json=body, timeout=30)
        if response.status_code not in set(ok):
            raise ControlPlaneError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def apply_crd(self, crd: dict[str, Any], *, deadline: float | None = None) -> None:
        """Create (or replace) a CRD and wait until it is Established and served."""
        name = crd["metadata"]["name"]
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        created = self.session().post(f"{self.url}{base}", json=crd, timeout=30)
        if created.status_code == 409:
            current = self.request("GET", f"{base}/{name}")
            body = {**crd, "metadata": {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
            self.request("PUT", f"{base}/{name}", body)
        elif created.status_code not in (200, 201):
            raise ControlPlaneError(f"creating CRD {name}: {created.status_code} {created.text[:500]}")
        self.wait_established(name, deadline=deadline)

    def wait_established(self, name: str, *, deadline: float | None = None) -> dict[str, Any]:
        """Wait until CRD `name` is Established, its storage version answers a list and its schema is published in
        /openapi/v3 (kube-apiserver publishes it a moment after Established; `kubectl explain` reads it there)."""
        end = deadline or time.monotonic() + 60
        last: Any = None
        while time.monotonic() < end:
            crd = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", ok=(200, 404))
            conditions = {c["type"]: c["status"] for c in ((crd or {}).get("status") or {}).get("conditions") or []}
            last = conditions
            if conditions.get("Established") == "True":
                spec = crd["spec"]
                version = next(v["name"] for v in spec["versions"] if v.get("storage"))
                listed = self.session().get(f"{self.url}/apis/{spec['group']}/{version}/{spec['names']['plural']}",
                                            timeout=10)  # fmt: skip
                if listed.status_code == 200 and self._schema_published(spec["group"], version, spec["names"]["kind"]):
                    return dict(crd)
            time.sleep(0.1)
        raise ControlPlaneError(f"CRD {name} not Established in time (conditions {last})")

    def _schema_published(self, group: str, version: str, kind: str) -> bool:
        index = self.session().get(f"{self.url}/openapi/v3", timeout=10)
        entry = index.json().get("paths", {}).get(f"apis/{group}/{version}") if index.status_code == 200 else None
        if not entry:
            return False
        document = self.session().get(f"{self.url}{entry['serverRelativeURL']}", timeout=30)
        schemas = document.json().get("components", {}).get("schemas", {}) if document.status_code == 200 else {}
        wanted = {"group": group, "version": version, "kind": kind}
        return any(wanted in (s.get("x-kubernetes-group-version-kind") or []) for s in schemas.values())

    def audit_events(self, user: str | None = None) -> list[dict[str, Any]]:
        """The audit log's completed requests (of the operator's namespace's ServiceAccounts), optionally of one
        user; each has `verb`, `objectRef` (apiGroup, resource, subresource, namespace, name) and
        `responseStatus.code`."""
        if not self.audit_log.is_file():
            return []
        events = []
        for line in self.audit_log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:  # a line being written right now
                continue
            if event.get("stage") != "ResponseComplete":
                continue
            if user is None or event.get("user", {}).get("username") == user:
                events.append(event)
        return events

    def ensure_namespace(self, name: str) -> None:
        """Create namespace `name` unless it exists."""
        self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}}, ok=(201, 409))

    def request_token(self, namespace: str, service_account: str, seconds: int = TOKEN_SECONDS) -> str:
        """A token for the ServiceAccount from the TokenRequest API (what a kubelet mounts into a pod)."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds}}  # fmt: skip
        answer = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token", body)
        return str(answer["status"]["token"])

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl 1.37 as the admin."""
        command = [str(tools.ensure_kubectl()), f"--kubeconfig={self.admin_kubeconfig}", *args]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False, timeout=120)
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()[:1000]}")
        return result


# ---- the chart's identity for the operator --------------------------------------------------------------------


def render_chart(
    values: dict[str, Any] | None = None, *, namespace: str = OPERATOR_NAMESPACE, release: str = CHART_RELEASE
) -> list[dict[str, Any]]:
    """`helm template` of the chart with `values` as release `release`, as a list of objects."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        json.dump(values or {}, handle)
    try:
        command = [str(tools.ensure_helm()), "template", release, str(CHART_DIR), "--namespace", namespace,
                   "--values", handle.name]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    finally:
        os.unlink(handle.name)
    if result.returncode != 0:
        raise ControlPlaneError(f"helm template failed: {result.stderr.strip()[:1000]}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def chart_rbac(
    values: dict[str, Any] | None = None, *, namespace: str = OPERATOR_NAMESPACE, release: str = CHART_RELEASE
) -> list[dict[str, Any]]:
    """The chart's ServiceAccount, (Cluster)Roles and bindings rendered with `values`."""
    rendered = render_chart(values, namespace=namespace, release=release)
    return [doc for doc in rendered if doc.get("kind") in RBAC_KINDS]


def service_account_of(objects: Iterable[dict[str, Any]]) -> tuple[str, str]:
    """(namespace, name) of the one ServiceAccount among the rendered objects."""
    accounts = [o for o in objects if o.get("kind") == "ServiceAccount"]
    if len(accounts) != 1:
        raise ControlPlaneError(f"expected one ServiceAccount in the chart's RBAC, found {len(accounts)}")
    meta = accounts[0]["metadata"]
    return str(meta.get("namespace") or OPERATOR_NAMESPACE), str(meta["name"])


def install_operator_identity(
    plane: ControlPlane, kubeconfig: Path, objects: list[dict[str, Any]], *, namespace: str = OPERATOR_NAMESPACE
) -> Path:
    """Apply the chart's RBAC objects as the admin and write a kubeconfig holding a TokenRequest token of the
    chart's ServiceAccount: the operator then talks to the apiserver as it would in a pod, judged by RBAC."""
    plane.ensure_namespace(namespace)
    for obj in objects:
        for other in [obj.get("metadata") or {}, *(obj.get("subjects") or [])]:
            if other.get("namespace"):
                plane.ensure_namespace(other["namespace"])
    plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
    sa_namespace, sa_name = service_account_of(objects)
    user = f"system:serviceaccount:{sa_namespace}:{sa_name}"
    wait_until_allowed(plane, user, objects)
    token = plane.request_token(sa_namespace, sa_name)
    return plane.write_kubeconfig(kubeconfig, token=token, user=user)


def granted(objects: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """SubjectAccessReview resourceAttributes for every verb on every resource the (Cluster)Roles grant; a Role's
    rules in its namespace, a ClusterRole's cluster-wide."""
    attributes = []
    for role in objects:
        if role.get("kind") not in ("Role", "ClusterRole"):
            continue
        namespace = (role.get("metadata") or {}).get("namespace", "") if role["kind"] == "Role" else ""
        for rule in role.get("rules") or []:
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    name, _, sub = resource.partition("/")
                    for verb in rule.get("verbs") or []:
                        attributes.append({"namespace": namespace, "verb": verb, "group": group, "resource": name,
                                           "subresource": sub})  # fmt: skip
    return attributes


def wait_until_allowed(plane: ControlPlane, user: str, objects: list[dict[str, Any]], timeout: float = 60) -> None:
    """Wait until the authorizer grants `user` everything the applied roles say (its RBAC informers need a moment
    after the apply): a SubjectAccessReview per verb and resource, so the operator's first request is not a 403."""
    namespace = user.removeprefix("system:serviceaccount:").split(":", 1)[0]
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    deadline = time.monotonic() + timeout
    for attributes in granted(objects):
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": user, "groups": groups, "resourceAttributes": attributes}}  # fmt: skip
        while not plane.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)["status"].get(
            "allowed"
        ):
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"RBAC never allowed {user} {attributes}")
            time.sleep(0.05)


class ConnectionCutter:
    """A TCP relay on loopback in front of the apiserver whose `cut()` drops every open connection at once.

    To a client this is what an apiserver restart or a load balancer's reset looks like: each watch stream ends
    and must be resumed from its last resourceVersion. Tests use it where restarting kube-apiserver itself
    (seconds each) between every step would be too slow. TLS passes through untouched.
    """

    def __init__(self, upstream: str) -> None:
        parsed = upstream.removeprefix("https://").rsplit(":", 1)
        self._upstream = (parsed[0], int(parsed[1]))
        self._listener = socket.create_server((LOOPBACK, 0))
        self.url = f"https://{LOOPBACK}:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, name="connection-cutter", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            with self._lock:
                self._open.discard(sock)

    def cut(self) -> int:
        """Drop every connection open now; return how many sockets were closed."""
        with self._lock:
            victims = list(self._open)
        self._drop(*victims)
        return len(victims)

    def close(self) -> None:
        """Stop accepting and drop everything."""
        self._listener.close()
        self.cut()


@contextlib.contextmanager
def running_control_plane(
    directory: Path | None = None, *, crds: Iterable[dict[str, Any]] = ()
) -> Iterator[ControlPlane]:
    """A started ControlPlane in `directory` (default: a temporary one), stopped afterwards."""
    with contextlib.ExitStack() as stack:
        base = directory or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="realkube-")))
        plane = ControlPlane(base)
        plane.start(crds=list(crds))
        stack.callback(plane.stop)
        yield plane


# ---- `python -m opsramp_sandbox.realkube`: the launcher's kube component -------------------------------------------


def serve(argv: list[str] | None = None) -> int:
    """Run a control plane in the foreground until SIGTERM; print READY <url> once it serves."""
    parser = argparse.ArgumentParser(prog="python -m opsramp_sandbox.realkube")
    parser.add_argument("--dir", required=True, type=Path, help="state directory (etcd data, certificates, logs)")
    parser.add_argument("--kubeconfig", required=True, type=Path, help="where to write the admin kubeconfig")
    parser.add_argument("--crd", action="append", type=Path, default=[], help="CRD file to apply before READY")
    parser.add_argument("--operator-kubeconfig", type=Path, help="apply the chart's RBAC and write the operator's")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    crds = [doc for path in args.crd for doc in yaml.safe_load_all(path.read_text()) if doc]
    plane = ControlPlane(args.dir)
    try:
        plane.start(crds=crds)
        plane.write_kubeconfig(args.kubeconfig)
        if args.operator_kubeconfig is not None:
            install_operator_identity(plane, args.operator_kubeconfig, chart_rbac())
        print(f"READY {plane.url}", flush=True)
        while not stop.is_set():
            dead = [name for name, alive in plane.running().items() if not alive]
            if dead:
                print(f"{', '.join(dead)} exited; see {args.dir / 'logs'}", file=sys.stderr, flush=True)
                return 1
            stop.wait(1.0)
        return 0
    except ControlPlaneError as exc:
        print(f"realkube: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        plane.stop()


if __name__ == "__main__":
    raise SystemExit(serve())
