"""moto's IAM and STS in server mode on 127.0.0.1, plus helpers to give tests a second AWS account."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

# moto's default account: what the default credential chain (any key moto does not know) acts in.
DEFAULT_ACCOUNT_ID = "123456789012"
# moto's account-selection header: requests carrying it act in that account (see TOOLS.md).
ACCOUNT_HEADER = "x-moto-account-id"


class SerializedMotoServer(ThreadedMotoServer):
    """moto's threaded server, answering one request at a time.

    moto's backends are not thread-safe: IAM's get_role iterates the roles dict while a concurrent CreateRole
    inserts into it, and the request fails with "dictionary changed size during iteration" as an HTML 500
    (which botocore cannot even parse). Real IAM never does that, so the sandbox must not either: requests are
    still accepted concurrently, and handled one after the other (moto is bound by the GIL anyway).
    """

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serialized(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(self._ip_address, self._port, serialized, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@dataclass
class MotoHandle:
    """A running moto server: its base URL and a way to stop it."""

    url: str
    _server: ThreadedMotoServer = field(repr=False)

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self._server.stop()

    def reset(self) -> None:
        """Forget every resource in every account (moto's /moto-api/reset), for test isolation."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def __enter__(self) -> MotoHandle:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_moto(port: int = 0, *, load_aws_managed_policies: bool = False) -> MotoHandle:
    """Start moto in a thread on 127.0.0.1 (`port=0`: a free port) and return its handle once it listens.

    `load_aws_managed_policies` makes AWS-managed policies (arn:aws:iam::aws:policy/...) exist; moto reads the
    switch from the environment when its IAM backend is first built, so it must be set before first use.
    """
    if load_aws_managed_policies:
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    # werkzeug logs every request to stderr at INFO; tests and the demo only want problems.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = SerializedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    return MotoHandle(url=f"http://{host}:{bound_port}", _server=server)


@dataclass(frozen=True)
class AccountKey:
    """An access key moto maps to `account_id`; the secret is fake and only ever used against moto."""

    account_id: str
    access_key_id: str
    secret_access_key: str


def create_account_key(moto_url: str, account_id: str, user_name: str = "opsramp-sandbox") -> AccountKey:
    """Create an IAM user and access key in `account_id`, so requests signed with it act in that account.

    Uses boto3 with moto's account header: the first request made with that header creates the account.
    """
    import boto3

    client: Any = boto3.client(
        "iam",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # moto accepts any secret for a key it does not know
    )

    def add_account_header(request: Any, **_: Any) -> None:
        request.headers[ACCOUNT_HEADER] = account_id

    client.meta.events.register("before-sign.iam", add_account_header)
    with contextlib.suppress(client.exceptions.EntityAlreadyExistsException):
        client.create_user(UserName=user_name)
    key = client.create_access_key(UserName=user_name)["AccessKey"]
    return AccountKey(account_id, key["AccessKeyId"], key["SecretAccessKey"])


def moto_json(moto_url: str, path: str) -> Any:
    """GET one of moto's own JSON endpoints (e.g. /moto-api/data.json) for debugging tests."""
    with urllib.request.urlopen(f"{moto_url}{path}", timeout=10) as response:
        return json.loads(response.read())
