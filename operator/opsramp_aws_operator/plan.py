"""`opsramp-aws-operator plan` (and `kubectl opsramp plan`): what the operator would do, before it does it.

For each AWSIntegration in the given files it reads live AWS, OpsRamp and (when reachable) the cluster through the
operator's own code (`Service.plan`, the reconcilers' plans) and prints what a pass would write: create, update
(field by field, policies as a JSON diff), replace, or nothing. Nothing is written anywhere, not even a label on a
Secret. The exit code is for pipelines: 0 nothing would change, 2 something would, 1 something could not be planned
(or would stop: NotOwned, AdoptionRefused, ...).

What it needs, and where it gets it:
- the Secrets the resources reference (OpsRamp credentials, External IDs): Secret manifests in the files or in
  `--secrets` files first, else the cluster of the kubeconfig (`--kubeconfig`, `--context`, `KUBECONFIG`);
- each resource's live UID and status (what the operator recorded: integration id, applied fields, ...): from the
  cluster; a resource not in the cluster (or `--no-cluster`) is planned as new;
- the operator's settings and guardrails: the same `OPERATOR_*` environment variables the operator reads, from the
  environment or `--operator-env FILE` (KEY=VALUE lines);
- AWS credentials that may read IAM in the target accounts (the default chain: a CI role), and network access to
  OpsRamp.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import redaction
from .aws import AwsSessions
from .constants import API_VERSION, KIND
from .errors import OperatorError
from .kube import OwnerReference, SecretData, Secrets, configure_client, read_awsintegration
from .models import AWSIntegrationSpec
from .planning import ResourcePlan, render
from .service import ResourceRef, Service
from .settings import Settings, SettingsError

EXIT_NO_CHANGES = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2


class ReadOnlySecrets(Secrets):
    """Secrets from the given manifests first, then (optionally) the cluster; every write is refused."""

    def __init__(self, manifests: Mapping[tuple[str, str], SecretData], *, cluster: bool) -> None:
        super().__init__(cache_seconds=0.0)
        self.manifests = dict(manifests)
        self.cluster = cluster

    def get(self, namespace: str, name: str, *, fresh: bool = False) -> SecretData | None:
        found = self.manifests.get((namespace, name))
        if found is not None or not self.cluster:
            return found
        return super().get(namespace, name, fresh=fresh)

    # Every write: refused (a plan that wrote would be a bug, not a plan).
    def create(
        self, namespace: str, name: str, data: Mapping[str, str], owner: OwnerReference, labels: Mapping[str, str]
    ) -> bool:
        raise RuntimeError("plan writes nothing")

    def add_label(self, namespace: str, secret: SecretData, key: str, value: str) -> None:
        raise RuntimeError("plan writes nothing")

    def add_finalizer(self, namespace: str, secret: SecretData, finalizer: str) -> None:
        raise RuntimeError("plan writes nothing")

    def remove_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        raise RuntimeError("plan writes nothing")

    def replace_data(self, namespace: str, secret: SecretData, data: Mapping[str, str]) -> None:
        raise RuntimeError("plan writes nothing")


def secret_from_manifest(doc: Mapping[str, Any], namespace: str) -> tuple[tuple[str, str], SecretData]:
    meta = doc.get("metadata") or {}
    data: dict[str, str] = {}
    for key, value in (doc.get("data") or {}).items():
        data[str(key)] = base64.b64decode(str(value)).decode("utf-8", errors="replace")
    for key, value in (doc.get("stringData") or {}).items():
        data[str(key)] = str(value)
    for value in data.values():
        redaction.register(value)
    ns = str(meta.get("namespace") or namespace)
    name = str(meta.get("name") or "")
    return (ns, name), SecretData(name=name, data=data, owner_uids=(), finalizers=(), deleting=False)


def load_documents(paths: Sequence[str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in paths:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        docs.extend(d for d in yaml.safe_load_all(text) if isinstance(d, dict))
    # kubectl's List wrapper
    flat: list[dict[str, Any]] = []
    for doc in docs:
        if doc.get("kind") == "List":
            flat.extend(i for i in doc.get("items") or () if isinstance(i, dict))
        else:
            flat.append(doc)
    return flat


def read_env_file(path: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = value.strip()
    return env


def plan_resource(service: Service, doc: Mapping[str, Any], namespace: str, cluster: bool) -> ResourcePlan:
    meta = doc.get("metadata") or {}
    ns = str(meta.get("namespace") or namespace)
    name = str(meta.get("name") or "")
    plan = ResourcePlan(ns, name)
    live: Mapping[str, Any] | None = None
    try:
        if cluster:
            live = read_awsintegration(ns, name)
        live_meta = (live or {}).get("metadata") or {}
        status = (live or {}).get("status") or {}
        ref = ResourceRef(namespace=ns, name=name, uid=str(live_meta.get("uid") or ""))
        spec = AWSIntegrationSpec.model_validate(dict(doc.get("spec") or {}))
        if spec.suspend:
            plan.notes.append("spec.suspend is true: the operator would change nothing")
            return plan
        planned = service.plan(spec, ref, status)
    except OperatorError as exc:
        plan.error = redaction.redact(f"{exc.reason}: {exc.message}")
        return plan
    except ValueError as exc:  # pydantic's ValidationError is one
        plan.error = redaction.redact(f"InvalidSpec: {exc}")
        return plan
    if live is None:
        planned.notes.append("not in the cluster (or not looked up): planned as a new resource")
    if spec.observe_only:
        planned.notes.extend(f"observed difference: {line}" for line in planned.differences())
        planned.notes.append("managementPolicy is Observe: the operator would report these and write nothing")
        planned.changes = []
        planned.blocked = []
    return planned


def main(argv: Sequence[str] | None = None, prog: str = "opsramp-aws-operator plan") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Print what the operator would do for each AWSIntegration in the files, reading live AWS, OpsRamp and the "
            "cluster and writing nothing. Exit code: 0 no changes, 2 changes, 1 errors."
        ),
    )
    parser.add_argument("-f", "--filename", action="append", required=True, help="YAML file(s); '-' for stdin")
    parser.add_argument("-n", "--namespace", default="default", help="namespace for resources that name none")
    parser.add_argument("--secrets", action="append", default=[], help="YAML file(s) with the Secrets to use")
    parser.add_argument("--kubeconfig", help="kubeconfig for Secrets and live status (default: KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--no-cluster", action="store_true", help="do not read the cluster (every resource is new)")
    parser.add_argument("--operator-env", help="KEY=VALUE file of the operator's OPERATOR_* settings")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument(
        "--show-documents", action="store_true", help="print permission policies to create in full (not a summary)"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
    redaction.install_logging_filter()
    env = dict(os.environ)
    if args.operator_env:
        env.update(read_env_file(args.operator_env))
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        docs = load_documents(args.filename) + load_documents(args.secrets)
    except (OSError, yaml.YAMLError) as exc:
        print(f"{prog}: cannot read the files: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    manifests = dict(secret_from_manifest(d, args.namespace) for d in docs if d.get("kind") == "Secret")
    resources = [d for d in docs if d.get("kind") == KIND and str(d.get("apiVersion", "")) == API_VERSION]
    if not resources:
        print(f"{prog}: no {KIND} ({API_VERSION}) in the files", file=sys.stderr)
        return EXIT_ERROR
    cluster = not args.no_cluster
    if cluster:
        try:
            configure_client(args.kubeconfig, args.context)
        except Exception as exc:  # no kubeconfig at all: plan from the files alone
            print(f"{prog}: no cluster ({type(exc).__name__}); planning from the files alone", file=sys.stderr)
            cluster = False
    service = Service(settings, secrets_api=ReadOnlySecrets(manifests, cluster=cluster), aws=AwsSessions())
    plans = [plan_resource(service, doc, args.namespace, cluster) for doc in resources]
    if args.output == "json":
        print(json.dumps({"resources": [p.as_json() for p in plans]}, indent=2, default=str))
    else:
        print(render(plans, show_documents=args.show_documents), end="")
    if any(p.action == "error" for p in plans):
        return EXIT_ERROR
    return EXIT_CHANGES if any(p.action != "none" for p in plans) else EXIT_NO_CHANGES


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """`kubectl opsramp plan ...`: kubectl runs `kubectl-opsramp` from PATH with the rest of the command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["plan"]:
        print("usage: kubectl opsramp plan -f FILE [...]   (see kubectl opsramp plan --help)", file=sys.stderr)
        return EXIT_ERROR
    return main(args[1:], prog="kubectl opsramp plan")
