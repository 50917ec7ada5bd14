"""Console entry point `opsramp-aws-operator`: settings, logging, metrics, then kopf's event loop."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import secrets
import socket
import sys
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from prometheus_client import start_http_server

from . import __version__, handlers, passlog, redaction
from .aws import AwsSessions, AwsSettings
from .kube import Secrets
from .service import Service
from .settings import Settings, SettingsError

log = logging.getLogger("opsramp_aws_operator")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with kopf's object reference when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        k8s = getattr(record, "k8s_ref", None)
        if isinstance(k8s, dict):
            entry["object"] = {k: k8s.get(k) for k in ("namespace", "name", "uid") if k8s.get(k)}
        entry.update(passlog.fields(record))
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The text format, with the resource and pass id in front of each line logged inside a pass."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pass_id = getattr(record, "pass_id", None)
        k8s = getattr(record, "k8s_ref", None)
        if pass_id and isinstance(k8s, dict):
            return f"{line} [{k8s.get('namespace')}/{k8s.get('name')} pass {pass_id}]"
        return line


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level)
    kopf.configure(
        debug=settings.log_level == "DEBUG",
        verbose=settings.log_level == "DEBUG",
        quiet=settings.log_level in ("WARNING", "ERROR"),
    )
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        if settings.log_format == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(TextFormatter("[%(asctime)s] %(name)-24.24s [%(levelname)-7s] %(message)s"))
    root.setLevel(level)
    for handler in root.handlers:
        # Before the formatter: the resource and the pass id of the pass that logs (passlog.py).
        handler.addFilter(passlog.PassContext())
    # Third-party clients log request details at DEBUG; keep them quiet unless asked for.
    for noisy in ("botocore", "boto3", "urllib3", "kubernetes", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
    redaction.install_logging_filter()


def build_service(settings: Settings) -> Service:
    aws = AwsSessions(
        AwsSettings(
            rate_limit=settings.iam_calls_per_second,
            # A twentieth of a second of margin, as the OpsRamp limiter keeps one: calls granted a second apart can
            # reach AWS closer together (the benchmark's restart saw 104 a second arrive against a budget of 100).
            rate_window_seconds=1.05,
            session_cache_size=settings.aws_session_cache_size,
            session_cache_seconds=settings.aws_session_cache_seconds,
        )
    )
    # The Secrets cache is safe here: the operator watches Secrets and secret_changed keeps it current.
    return Service(settings, aws=aws, secrets_api=Secrets(cache_seconds=settings.secret_cache_seconds))


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["plan"]:
        # What the operator would do for resources in files, writing nothing (docs/lifecycle.md).
        from . import plan

        return plan.main(args_in[1:])
    if args_in[:1] == ["probe"]:
        # Answers the open questions about OpsRamp's API for one tenant (docs/opsramp-api-assumptions.md).
        from .opsramp import probe

        return probe.main(args_in[1:])
    parser = argparse.ArgumentParser(
        prog="opsramp-aws-operator",
        description="Reconcile AWSIntegration resources into IAM roles and OpsRamp AWS integrations. "
        "Configured by OPERATOR_* environment variables (see docs/configuration.md). "
        "`opsramp-aws-operator probe --help`: ask an OpsRamp tenant the open questions about its API. "
        "`opsramp-aws-operator plan --help`: what the operator would do for resources in files, writing nothing.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.parse_args(args_in)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"opsramp-aws-operator: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_address)
    if settings.peering_name:
        # Fix this replica's priority once, for both kopf.run and the startup settings.
        settings = dataclasses.replace(settings, peering_priority=handlers.peering_priority(settings))
    # Our own peering identity, given to kopf and to the resync scheduler, which follows kopf's peering decisions.
    identity = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings, identity)
    log.info(
        "Starting opsramp-aws-operator %s (namespaces: %s, resync every %ss%s)",
        __version__,
        ", ".join(settings.namespaces) or "all",
        settings.resync_interval_seconds,
        f", shard {settings.shard_name}: {settings.shard_selector}" if settings.shard_name else "",
    )
    kopf.run(
        registry=registry,
        standalone=settings.peering_name is None,
        peering_name=settings.peering_name,
        priority=settings.peering_priority,
        identity=cast(Any, identity),  # kopf's Identity is a NewType of str
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        memo=kopf.Memo(service=build_service(settings)),
    )
    exit_without_joining_threads()
    return 0


def exit_without_joining_threads() -> None:
    """End the process now that kopf has stopped (its cleanup handlers have run).

    A pass still running in a thread (the resync scheduler's, or a change handler's that kopf cancelled) is abandoned
    as a crash would leave it: every write is made crash-safe (the chaos suite kills the operator after each one).
    The interpreter's normal exit would join those threads, each for as long as its calls' timeouts and retries
    allow, and hold a terminating pod past its grace period until the kubelet's SIGKILL.
    """
    log.info("Stopped")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
