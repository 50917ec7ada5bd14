"""moto's IAM and STS in server mode on 127.0.0.1, plus helpers to give tests a second AWS account."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import urllib.parse
import urllib.request
import uuid
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
                refused = _refused(environ)
                if refused is not None:
                    status, body = refused
                    start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
                    return [body]
                return list(app(environ, start_response))

        self._server = make_server(self._ip_address, self._port, serialized, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


def _refused(environ: dict[str, Any]) -> tuple[str, bytes] | None:
    """The HTTP status and error body AWS would answer where moto is more lenient than AWS, else None (moto answers).

    Reads the form body (and puts it back for moto) only for the actions below.
    """
    if environ.get("REQUEST_METHOD") != "POST":
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length <= 0 or length > 65536:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    if not any(action in body for action in _STRICT_ACTIONS):
        return None
    params = {key: values[0] for key, values in urllib.parse.parse_qs(body.decode(errors="replace")).items()}
    action = params.get("Action", "")
    if action == "AssumeRole":
        return _refused_assume(params.get("RoleArn", ""))
    if action in ("CreateRole", "PutRolePermissionsBoundary"):
        return _refused_boundary(params.get("PermissionsBoundary", ""))
    return None


_STRICT_ACTIONS = (b"Action=AssumeRole", b"Action=CreateRole", b"Action=PutRolePermissionsBoundary")


def _error(namespace: str, code: str, message: str) -> bytes:
    """AWS's query-protocol error document."""
    return (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    ).encode()


def _refused_assume(arn: str) -> tuple[str, bytes] | None:
    """STS's answer to an AssumeRole of a role that does not exist in a member account of the organization, else None.

    moto lets anyone assume any role, even a missing one. For a member account of a moto organization the sandbox
    answers as AWS does when the member role (OrganizationAccountAccessRole) is gone: AccessDenied, so that "one
    member account refuses" is a real answer over the wire. Other accounts keep moto's behaviour.
    """
    parts = arn.split(":")
    if len(parts) < 6 or not parts[5].startswith("role/"):
        return None
    account, name = parts[4], parts[5].rsplit("/", 1)[-1]
    from moto.iam.models import iam_backends
    from moto.organizations.models import organizations_backends

    if account not in organizations_backends.master_accounts:
        return None
    roles = iam_backends[account]["global"].roles.values()
    if any(role.name == name for role in roles):
        return None
    message = f"User is not authorized to perform: sts:AssumeRole on resource: {arn}"
    return "403 Forbidden", _error("https://sts.amazonaws.com/doc/2011-06-15/", "AccessDenied", message)


def _refused_boundary(arn: str) -> tuple[str, bytes] | None:
    """IAM's answer to a permissions boundary that names a customer-managed policy that does not exist, else None.

    moto stores any well-formed boundary ARN; IAM refuses CreateRole and PutRolePermissionsBoundary with
    NoSuchEntity and creates nothing. AWS-managed boundaries (account `aws`) keep moto's behaviour, since whether
    moto knows them depends on MOTO_IAM_LOAD_MANAGED_POLICIES.
    """
    parts = arn.split(":")
    if len(parts) < 6 or not parts[4].isdigit() or not parts[5].startswith("policy/"):
        return None
    from moto.iam.models import iam_backends

    if arn in iam_backends[parts[4]]["global"].managed_policies:
        return None
    message = f"Scope ARN: {arn} does not exist or is not attachable."
    return "404 Not Found", _error("https://iam.amazonaws.com/doc/2010-05-08/", "NoSuchEntity", message)


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


# The sandbox organization's member role (what AWS Organizations creates in every account it creates).
MEMBER_ROLE = "OrganizationAccountAccessRole"


@dataclass
class SandboxOrganization:
    """An AWS Organization in moto: the management account (moto's default), its root, OUs and member accounts."""

    moto_url: str
    root_id: str
    units: dict[str, str]  # OU name -> id
    accounts: dict[str, list[str]]  # OU name -> member account ids

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "organizations",
            endpoint_url=self.moto_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def add_account(self, unit: str, name: str) -> str:
        """Create a member account and move it into `unit`; returns its id."""
        client = self.client()
        status = client.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]
        account_id = str(status["AccountId"])
        client.move_account(AccountId=account_id, SourceParentId=self.root_id, DestinationParentId=self.units[unit])
        self.accounts.setdefault(unit, []).append(account_id)
        return account_id

    def move(self, account_id: str, source: str, destination: str) -> None:
        self.client().move_account(
            AccountId=account_id, SourceParentId=self.units[source], DestinationParentId=self.units[destination]
        )
        self.accounts[source].remove(account_id)
        self.accounts.setdefault(destination, []).append(account_id)

    def break_member_role(self, account_id: str) -> None:
        """Delete the member role in `account_id`: the operator's AssumeRole there is refused from now on."""
        iam = member_iam(self.moto_url, account_id)
        iam.delete_role(RoleName=MEMBER_ROLE)

    @property
    def all_accounts(self) -> list[str]:
        return [a for ids in self.accounts.values() for a in ids]


def member_iam(moto_url: str, account_id: str) -> Any:
    """An IAM client acting in `account_id` (moto's account header), for checks and fixtures."""
    import boto3

    client: Any = boto3.client(
        "iam",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

    def add_account_header(request: Any, **_: Any) -> None:
        request.headers[ACCOUNT_HEADER] = account_id

    client.meta.events.register("before-sign.iam", add_account_header)
    return client


def create_organization(moto_url: str, units: dict[str, int], prefix: str = "member") -> SandboxOrganization:
    """An organization managed by moto's default account, with one OU per `units` entry holding that many accounts.

    moto creates OrganizationAccountAccessRole (trusting the management account) in every account it creates, as
    AWS Organizations does. An organization exists once per moto server: a second call reuses it and adds OUs.
    """
    import boto3

    client: Any = boto3.client(
        "organizations",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with contextlib.suppress(client.exceptions.AlreadyInOrganizationException):
        client.create_organization(FeatureSet="ALL")
    root_id = str(client.list_roots()["Roots"][0]["Id"])
    org = SandboxOrganization(moto_url, root_id, {}, {})
    for unit, count in units.items():
        org.units[unit] = str(
            client.create_organizational_unit(ParentId=root_id, Name=unit)["OrganizationalUnit"]["Id"]
        )
        for index in range(count):
            org.add_account(unit, f"{prefix}-{unit}-{index}-{uuid.uuid4().hex[:6]}")
    return org
