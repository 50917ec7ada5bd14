"""The end-to-end harness: the sandbox (a real Kubernetes control plane, moto, OpsRamp emulator) and the real
operator process.

The operator runs as a subprocess of the `opsramp-aws-operator` console script, exactly as in a pod, and talks
to every counterpart over HTTP. Kubernetes is, by E2E_KUBE:
- `real` (default): etcd + kube-apiserver + kube-controller-manager built from source (`make controlplane`), with
  the project's CRD and the chart's RBAC applied; the operator connects as the chart's ServiceAccount with a
  TokenRequest token, so the real authorizer judges every request it makes. Tests act as the admin.
- `emulator`: the project's Kubernetes emulator (no RBAC, no controllers).
With `KUBECONFIG` pointing at a cluster of your own (and E2E_REAL_CLUSTER=1) the same tests use that cluster with
your credentials for both; AWS and OpsRamp stay emulated.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import boto3
import kubernetes
import requests
import yaml
from kubernetes.client.exceptions import ApiException

from opsramp_aws_operator.guardrails import endpoint_hostport
from opsramp_sandbox.aws import MotoHandle, start_moto
from opsramp_sandbox.kube import KubeEmulator, load_crds
from opsramp_sandbox.opsramp import ApiClient, OpsRampEmulator
from opsramp_sandbox.realkube import ControlPlane, chart_rbac, install_operator_identity

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "awsintegrations.integrations.opsramp.com.yaml"
GROUP, VERSION, PLURAL = "integrations.opsramp.com", "v1alpha1", "awsintegrations"
OPSRAMP_ACCOUNT = "999988887777"
TENANT = "client_1"
CLIENT_ID = "e2e-client"
AWS_ACCOUNT = "123456789012"  # moto's default account


def fast_settings() -> dict[str, str]:
    """Operator settings for tests: short intervals so drift and backoff show within seconds."""
    return {
        "OPERATOR_OPSRAMP_AWS_ACCOUNT_ID": OPSRAMP_ACCOUNT,
        "OPERATOR_LOG_FORMAT": "json",
        "OPERATOR_LOG_LEVEL": "INFO",
        "OPERATOR_HEALTH_PORT": "0",
        "OPERATOR_METRICS_PORT": "0",
        "OPERATOR_RESYNC_INTERVAL_SECONDS": "4",
        "OPERATOR_RESYNC_TICK_SECONDS": "1",
        "OPERATOR_ROLE_SETTLE_SECONDS": "1",
        "OPERATOR_ATTENTION_BACKOFF_SECONDS": "1",
        "OPERATOR_ATTENTION_BACKOFF_MAX_SECONDS": "4",
        # OpsRamp's verdict on the role: the sandbox's asynchronous variant answers within a second or two.
        "OPERATOR_MONITORING_GRACE_SECONDS": "6",
    }


def sandbox_guardrails(sandbox: Sandbox) -> dict[str, str]:
    """What the sandbox's operator must be allowed explicitly: its OpsRamp emulator's loopback host and port."""
    return {"OPERATOR_ALLOWED_OPSRAMP_HOSTS": f"*.opsramp.com,{endpoint_hostport(sandbox.opsramp.url)}"}


@dataclass
class Sandbox:
    kube: KubeEmulator | None
    moto: MotoHandle
    opsramp: OpsRampEmulator
    kubeconfig: Path  # the tests' (admin on the real control plane)
    client_secret: str
    workdir: Path
    plane: ControlPlane | None = None
    # The operator's: the chart's ServiceAccount token on the real control plane, else `kubeconfig`.
    operator_kubeconfig: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """The operator process's environment (its kubeconfig, AWS pointed at moto)."""
        return {
            "KUBECONFIG": str(self.operator_kubeconfig or self.kubeconfig),
            "AWS_ENDPOINT_URL": self.moto.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def iam(self) -> Any:
        return boto3.client(
            "iam",
            endpoint_url=self.moto.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@dataclass
class Operator:
    """The operator process; `start`, `stop` (SIGTERM) and `kill` (SIGKILL) like a pod's lifecycle."""

    sandbox: Sandbox
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        # Unique per Operator object: two replicas in one sandbox must not share (and overwrite) a log.
        log_path = self.sandbox.workdir / f"operator-{id(self):x}-{len(self.logs)}.log"
        self.logs.append(log_path)
        env = {
            **os.environ,
            **self.sandbox.env,
            **fast_settings(),
            **sandbox_guardrails(self.sandbox),
            **self.extra_env,
        }
        exe = Path(sys.executable).parent / "opsramp-aws-operator"
        with log_path.open("wb") as out:
            self.process = subprocess.Popen([str(exe)], env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def kube_kind() -> str:
    """Which Kubernetes the suite runs against: `external` (E2E_REAL_CLUSTER=1 with KUBECONFIG), else E2E_KUBE
    (`real`, the default, or `emulator`)."""
    if os.environ.get("E2E_REAL_CLUSTER") == "1" and os.environ.get("KUBECONFIG"):
        return "external"
    kind = os.environ.get("E2E_KUBE", "real")
    if kind not in ("real", "emulator"):
        raise ValueError(f"E2E_KUBE must be real or emulator, not {kind!r}")
    return kind


def operator_identity(
    sandbox: Sandbox, values: dict[str, Any] | None = None, *, release: str = "opsramp-aws-operator"
) -> Path:
    """A kubeconfig for an operator that runs with the chart's RBAC rendered with `values` (as release `release`,
    so its ServiceAccount and roles are its own); on an emulator or a cluster of yours, the suite's kubeconfig."""
    if sandbox.plane is None:
        return sandbox.operator_kubeconfig or sandbox.kubeconfig
    objects = chart_rbac(values, release=release)
    return install_operator_identity(sandbox.plane, sandbox.workdir / f"{release}.kubeconfig", objects)


def start_sandbox(
    workdir: Path, *, propagation_delay: float = 0.5, chart_values: dict[str, Any] | None = None
) -> Sandbox:
    """moto, the OpsRamp emulator and Kubernetes (see kube_kind); on the real control plane the operator's
    identity is the chart's ServiceAccount with the RBAC the chart renders for `chart_values`."""
    client_secret = "e2e-secret-" + uuid.uuid4().hex
    kubeconfig = workdir / "kubeconfig"
    kube: KubeEmulator | None = None
    plane: ControlPlane | None = None
    kind = kube_kind()
    if kind == "external":
        kubeconfig = Path(os.environ["KUBECONFIG"])
    elif kind == "real":
        plane = ControlPlane(workdir / "kube").start(crds=load_crds([CRD]))
        plane.write_kubeconfig(kubeconfig)
    else:
        kube = KubeEmulator(crds=load_crds([CRD]))
        kube.start()
        kube.write_kubeconfig(kubeconfig)
    moto = start_moto()
    opsramp = OpsRampEmulator(
        clients=[ApiClient(TENANT, CLIENT_ID, client_secret)],
        opsramp_aws_account_id=OPSRAMP_ACCOUNT,
        iam_endpoint_url=moto.url,
        propagation_delay_seconds=propagation_delay,
        rate_window_seconds=60.0,
    )
    opsramp.start()
    sandbox = Sandbox(kube, moto, opsramp, kubeconfig, client_secret, workdir, plane=plane)
    if plane is not None:
        # By default the chart's default install: all namespaces, no peering, cluster-wide RBAC.
        sandbox.operator_kubeconfig = operator_identity(sandbox, chart_values)
    return sandbox


def stop_sandbox(sandbox: Sandbox) -> None:
    sandbox.opsramp.stop()
    sandbox.moto.stop()
    if sandbox.kube is not None:
        sandbox.kube.stop()
    if sandbox.plane is not None:
        sandbox.plane.stop()


class Kube:
    """Thin helpers over the official client, as a user's scripts would use it."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api_client = kubernetes.config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name)))
        return name

    def apply_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        meta = kubernetes.client.V1ObjectMeta(name=name, namespace=namespace)
        try:
            self.core.create_namespaced_secret(namespace, kubernetes.client.V1Secret(metadata=meta, string_data=data))
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_namespaced_secret(name, namespace, {"stringData": data})

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        ns = obj["metadata"]["namespace"]
        return cast(dict[str, Any], self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, obj))

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result = cast(
                dict[str, Any], self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def objects(self, namespace: str) -> list[dict[str, Any]]:
        listed = cast(dict[str, Any], self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL))
        return list(listed["items"])

    def all_objects(self) -> list[dict[str, Any]]:
        listed = cast(dict[str, Any], self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL))
        return list(listed["items"])

    def secret_finalizers(self, namespace: str, name: str) -> list[str]:
        meta = self.core.read_namespaced_secret(name, namespace).metadata
        return list((meta.finalizers if meta is not None else None) or [])

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})

    def patch_meta(self, namespace: str, name: str, meta: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"metadata": meta})

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def events(self, namespace: str, name: str) -> list[Any]:
        items = self.core.list_namespaced_event(namespace).items
        return [e for e in items if e.involved_object.name == name]


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.3) -> Any:
    """Poll until `check()` is truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


def integration_resource(
    namespace: str, name: str, endpoint: str, secret: str = "opsramp-api-client", **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AWSIntegration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "regions": ["us-east-1"],
            "opsramp": {"endpoint": endpoint, "tenantId": TENANT, "credentialsSecretRef": {"name": secret}},
        },
    }
    # The sandbox's OpsRamp honours client-chosen External IDs by default, so most tests let the operator generate
    # one; tests of the console's External ID pass externalIdSecretRef.
    if "externalIdSecretRef" not in spec:
        body["spec"]["generateExternalId"] = True
    body["spec"].update(spec)
    return body


def example_resource(namespace: str, endpoint: str) -> dict[str, Any]:
    """examples/awsintegration.yaml pointed at the sandbox (its External ID Secret must exist: console_secret)."""
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "awsintegration.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["opsramp"].update({"endpoint": endpoint, "tenantId": TENANT, "awsAccountId": OPSRAMP_ACCOUNT})
    return doc


def console_secret(kube: Kube, sandbox: Sandbox, namespace: str, tenant: str = TENANT) -> str:
    """examples/external-id-secret.yaml filled with the External ID the sandbox's OpsRamp console shows."""
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "external-id-secret.yaml").read_text())
    value = sandbox.opsramp.console_external_id(tenant)
    SECRETS_SEEN.add(value)
    kube.apply_secret(namespace, doc["metadata"]["name"], {"externalId": value})
    return str(doc["metadata"]["name"])


def roles_named(sandbox: Sandbox, prefix: str) -> list[str]:
    roles = sandbox.iam().list_roles()["Roles"]
    return [r["RoleName"] for r in roles if r["RoleName"].startswith(prefix)]


def iter_lines(text: str) -> Iterator[str]:
    yield from text.splitlines()


# --- helpers for the behaviour tests ------------------------------------------------------------------------

INSTALL_ROUTE = ("POST", "/api/v2/tenants/{tenantId}/integrations/install/AWS")
UPDATE_ROUTE = ("POST", "/api/v2/tenants/{tenantId}/integrations/installed/{installedIntgId}")
UNINSTALL_ROUTE = ("DELETE", "/api/v2/tenants/{tenantId}/integrations/installed/{installedIntgId}")
TOKEN_ROUTE = "/tenancy/auth/oauth/token"

# Every secret value a test saw (client secrets, External IDs): the leak test scans for all of them.
SECRETS_SEEN: set[str] = set()
# Every operator process the suite started (the session one and the crash tests' own), for the leak scan.
ALL_OPERATORS: list[Operator] = []


def external_id_of(kube: Kube, namespace: str, obj: dict[str, Any]) -> str:
    """The External ID held in the Secret the resource's status names (remembered for the leak scan)."""
    name = obj["status"]["externalIdSecretName"]
    raw = (kube.core.read_namespaced_secret(name, namespace).data or {})["externalId"]
    value = base64.b64decode(raw).decode()
    SECRETS_SEEN.add(value)
    return value


def wait_condition(
    kube: Kube,
    namespace: str,
    name: str,
    ctype: str,
    status: str,
    reason: str | None = None,
    *,
    timeout: float = 60.0,
    current_generation: bool = True,
) -> dict[str, Any]:
    """Wait until condition `ctype` has `status` (and `reason`), computed for the object's current generation."""

    seen: list[Any] = [None]

    def check() -> dict[str, Any] | None:
        obj = kube.get(namespace, name)
        seen[0] = obj and {"generation": obj["metadata"].get("generation"), "status": obj.get("status")}
        cond = condition(obj, ctype)
        if obj is None or cond.get("status") != status or (reason is not None and cond.get("reason") != reason):
            return None
        if current_generation and cond.get("observedGeneration") != obj["metadata"].get("generation"):
            return None
        return obj

    try:
        result: dict[str, Any] = wait_for(f"{namespace}/{name} {ctype}={status} {reason or ''}", check, timeout)
    except AssertionError:
        raise AssertionError(
            f"timed out after {timeout}s waiting for {namespace}/{name} {ctype}={status} {reason or ''}; "
            f"last seen: {seen[0]!r}"
        ) from None
    return result


def wait_ready(kube: Kube, namespace: str, name: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Wait for Ready=True at the current generation; remember the External ID for the leak scan."""
    obj = wait_condition(kube, namespace, name, "Ready", "True", timeout=timeout)
    if (obj.get("status") or {}).get("externalIdSecretName"):
        external_id_of(kube, namespace, obj)
    return obj


def delete_and_wait(kube: Kube, namespace: str, name: str, *, timeout: float = 45.0) -> None:
    try:
        kube.delete(namespace, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    wait_for(f"{namespace}/{name} gone", lambda: kube.get(namespace, name) is None, timeout)


def role_name_of(obj: dict[str, Any]) -> str:
    return str(obj["status"]["roleArn"]).rsplit("/", 1)[-1]


def get_role(sandbox: Sandbox, role_name: str) -> dict[str, Any] | None:
    try:
        role: dict[str, Any] = sandbox.iam().get_role(RoleName=role_name)["Role"]
    except sandbox.iam().exceptions.NoSuchEntityException:
        return None
    return role


def trust_document(role: dict[str, Any]) -> dict[str, Any]:
    doc = role["AssumeRolePolicyDocument"]
    parsed: dict[str, Any] = json.loads(unquote(doc)) if isinstance(doc, str) else doc
    return parsed


def our_policies(sandbox: Sandbox, role_name: str) -> list[dict[str, Any]]:
    """Customer-managed policies named like the operator's parts for `role_name` (`<role>-opsramp-<n>`)."""
    iam = sandbox.iam()
    found: list[dict[str, Any]] = []
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        found.extend(p for p in page["Policies"] if str(p["PolicyName"]).startswith(f"{role_name}-opsramp-"))
    return found


def role_state(sandbox: Sandbox, role_name: str) -> dict[str, Any]:
    """Everything a write to the role or its policies would change, as IAM reports it (for before/after)."""
    iam = sandbox.iam()
    role = iam.get_role(RoleName=role_name)["Role"]
    role.pop("RoleLastUsed", None)
    attached = sorted(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"])
    policies = {}
    for policy in our_policies(sandbox, role_name):
        versions = iam.list_policy_versions(PolicyArn=policy["Arn"])["Versions"]
        tags = iam.list_policy_tags(PolicyArn=policy["Arn"])["Tags"]
        policies[policy["Arn"]] = {
            "default": policy["DefaultVersionId"],
            "versions": sorted(v["VersionId"] for v in versions),
            "updated": str(policy["UpdateDate"]),
            "tags": sorted((t["Key"], t["Value"]) for t in tags),
        }
    return {
        "role": {**role, "AssumeRolePolicyDocument": trust_document(role), "Tags": sorted_tags(role)},
        "attached": attached,
        "inline": iam.list_role_policies(RoleName=role_name)["PolicyNames"],
        "policies": policies,
    }


def sorted_tags(role: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((t["Key"], t["Value"]) for t in role.get("Tags") or [])


def integration_by_id(sandbox: Sandbox, integration_id: str) -> dict[str, Any] | None:
    return next((i for i in sandbox.opsramp.integrations(TENANT) if i["id"] == integration_id), None)


def integrations_named(sandbox: Sandbox, display_name: str) -> list[dict[str, Any]]:
    return [i for i in sandbox.opsramp.integrations(TENANT) if i.get("displayName") == display_name]


def regions_of(integration: dict[str, Any]) -> set[str]:
    return set(str(integration["credential"]["Regions"]).split(","))


def opsramp_writes(sandbox: Sandbox) -> dict[str, int]:
    """How many installs, updates and uninstalls the OpsRamp emulator has answered so far (any status)."""
    return {
        "install": sandbox.opsramp.request_count(*INSTALL_ROUTE),
        "update": sandbox.opsramp.request_count(*UPDATE_ROUTE),
        "uninstall": sandbox.opsramp.request_count(*UNINSTALL_ROUTE),
    }


def token_requests(sandbox: Sandbox, status: int | None = None, since: float = 0.0) -> list[float]:
    """Wall-clock times of the token requests the emulator saw (optionally only those answered `status`)."""
    log = sandbox.opsramp.state()["request_log"]
    return [
        float(r["at"])
        for r in log
        if r["route"] == TOKEN_ROUTE
        and r["method"] == "POST"
        and (status is None or r["status"] == status)
        and r["at"] >= since
    ]


RETRY_LINE = "failed temporarily"


def handler_failures(output: str, namespace: str, name: str) -> list[float]:
    """Epoch seconds of each failed attempt of one resource's change handler, from an operator's JSON log (kopf
    logs every one; resync passes, which run on their own schedule, are not among them)."""
    times = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        obj = record.get("object") if isinstance(record, dict) else None
        ours = isinstance(obj, dict) and (obj.get("namespace"), obj.get("name")) == (namespace, name)
        if ours and RETRY_LINE in str(record.get("message")):
            times.append(datetime.fromisoformat(record["time"]).timestamp())
    return times


def integration_reads(sandbox: Sandbox, integration_id: str) -> int:
    """GETs of one integration by id that the OpsRamp emulator answered: every pass over a resource that has
    recorded its integration makes exactly one (it also proves the credentials still work)."""
    suffix = f"/integrations/installed/{integration_id}"
    log = sandbox.opsramp.state()["request_log"]
    return sum(1 for r in log if r["method"] == "GET" and str(r["path"]).endswith(suffix))


def wait_passes(sandbox: Sandbox, integration_id: str, passes: int = 2, *, timeout: float = 60.0) -> None:
    """Wait until `passes` more passes have read the integration, so at least `passes - 1` of them are finished.

    Passes over one resource never overlap (each holds the resource's lock), so a pass's read proves the one
    before it ended, writes included. This is how a test sees that a resync had its turn and wrote nothing.
    """
    start = integration_reads(sandbox, integration_id)
    wait_for(
        f"{passes} more passes reading integration {integration_id}",
        lambda: integration_reads(sandbox, integration_id) >= start + passes,
        timeout,
    )


def uninstall_behind_back(sandbox: Sandbox, integration_id: str) -> None:
    """Uninstall an integration through OpsRamp's public API, as a person in the console would."""
    base = sandbox.opsramp.url
    token = requests.post(
        f"{base}{TOKEN_ROUTE}",
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": sandbox.client_secret},
        timeout=10,
    ).json()["access_token"]
    response = requests.delete(
        f"{base}/api/v2/tenants/{TENANT}/integrations/installed/{integration_id}",
        json={"uninstallReason": "removed by hand in an e2e test"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    response.raise_for_status()


def warning_events(kube: Kube, namespace: str, name: str) -> list[Any]:
    return [e for e in kube.events(namespace, name) if e.type == "Warning"]


class WatchRecorder:
    """Keeps a text of every object a watch stream yields, restarting a dropped watch, until stopped."""

    def __init__(self, name: str, list_fn: Callable[..., Any], *args: Any, render: Callable[[Any], str]) -> None:
        self.texts: list[str] = []
        self._list_fn, self._args, self._render = list_fn, args, render
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            watcher = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in watcher.stream(self._list_fn, *self._args, timeout_seconds=2):  # type: ignore[no-untyped-call]
                    self.texts.append(self._render(event["object"]))
                    if self._stop.is_set():
                        break
            except Exception:  # a dropped watch is restarted; the next list replays what exists
                time.sleep(0.2)
            finally:
                watcher.stop()  # type: ignore[no-untyped-call]


class ObjectRecorder(WatchRecorder):
    """Every version of every AWSIntegration in the cluster as JSON (statuses included).

    The leak scan needs statuses of objects long deleted by the end of the suite.
    """

    def __init__(self, kube: Kube) -> None:
        super().__init__(
            "e2e-object-recorder",
            kube.custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            render=lambda obj: json.dumps(obj, default=str),
        )


def roles_owned_by(sandbox: Sandbox, uid: str) -> list[str]:
    """Names of every IAM role carrying the ownership tag of resource `uid` (however it was named)."""
    iam = sandbox.iam()
    names: list[str] = []
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            tags = iam.list_role_tags(RoleName=role["RoleName"])["Tags"]
            if any(t["Key"] == "opsramp.com/owner-uid" and t["Value"] == uid for t in tags):
                names.append(role["RoleName"])
    return names


def policies_owned_by(sandbox: Sandbox, uid: str) -> list[str]:
    """ARNs of every customer-managed policy carrying the ownership tag of resource `uid`."""
    iam = sandbox.iam()
    arns: list[str] = []
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        for policy in page["Policies"]:
            tags = iam.list_policy_tags(PolicyArn=policy["Arn"])["Tags"]
            if any(t["Key"] == "opsramp.com/owner-uid" and t["Value"] == uid for t in tags):
                arns.append(policy["Arn"])
    return arns
