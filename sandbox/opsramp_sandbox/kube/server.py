"""The HTTP face of the emulator: URL routing, discovery, lists, Table output and watch streams on aiohttp."""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import json
import re
from collections import Counter
from typing import Any

import yaml
from aiohttp import web

from . import openapi, printers, protobuf
from .store import APPLY_PATCH, ApiError, Obj, ResourceType, Store
from .watch import CLOSE

SERVER_VERSION = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.0-opsramp-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA before beta before alpha, higher numbers first."""
    match = _VERSION_RE.match(version)
    if not match:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[match[2]]
    return (stage, -int(match[1]), -int(match[3] or 0), version)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _present(rt: ResourceType, obj: Obj) -> Obj:
    """An object as the requested version shows it (versions share storage; only apiVersion differs)."""
    if obj.get("apiVersion") == rt.group_version:
        return obj
    return {**obj, "apiVersion": rt.group_version}


def human_duration(seconds: float) -> str:
    """The apiserver's short age format (`45s`, `3m2s`, `5h`, `2d3h`)."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // (24 * 365)}y"


_JSONPATH_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-]+)"""
    r"""|\[(?P<index>\d+)\]"""
    r"""|\[(?P<star>\*)\]"""
    r"""|\[\?\(@\.(?P<fpath>[\w.\-]+)\s*==\s*["'](?P<fvalue>[^"']*)["']\)\]"""
)


def jsonpath(obj: Any, expression: str) -> list[Any]:
    """The subset of JSONPath that printer columns use: fields, indexes, `[*]` and `[?(@.a=="b")]`."""
    nodes = [obj]
    expression = expression.strip().removeprefix("{").removesuffix("}").removeprefix("$")
    position = 0
    while position < len(expression):
        match = _JSONPATH_TOKEN.match(expression, position)
        if match is None:
            return []
        position = match.end()
        following: list[Any] = []
        for node in nodes:
            if match["field"] is not None and isinstance(node, dict) and match["field"] in node:
                following.append(node[match["field"]])
            elif match["index"] is not None and isinstance(node, list) and int(match["index"]) < len(node):
                following.append(node[int(match["index"])])
            elif match["star"] is not None and isinstance(node, list):
                following.extend(node)
            elif match["fpath"] is not None and isinstance(node, list):
                for item in node:
                    value: Any = item
                    for part in match["fpath"].split("."):
                        value = value.get(part) if isinstance(value, dict) else None
                    if value is not None and str(value) == match["fvalue"]:
                        following.append(item)
        nodes = following
    return nodes


def _age(timestamp: Any) -> str | None:
    if not isinstance(timestamp, str):
        return None
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return human_duration((datetime.datetime.now(tz=datetime.UTC) - then).total_seconds())


def _printer_cell(column: Obj, obj: Obj) -> Any:
    """One cell of a CRD's additionalPrinterColumns."""
    found = jsonpath(obj, column["jsonPath"])
    value = found[0] if found else None
    return _age(value) if column.get("type") == "date" else value


def _wants_table(request: web.Request) -> bool:
    for part in request.headers.get("Accept", "").split(","):
        params = {p.split("=", 1)[0].strip(): p.split("=", 1)[-1].strip() for p in part.split(";")[1:]}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return True
    return False


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def request_key(request: web.Request) -> tuple[str, str, str]:
    """(verb, resource, client) of an API request: `watch`/`get`/`create`/`patch`/..., the resource path with
    namespace and name dropped (`awsintegrations/status`, `secrets`, `discovery`), and the User-Agent's first
    word (`kopf/1.38.0`, `OpenAPI-Generator/35.0.0/python`, `kubectl/v1.37.0`)."""
    verb = _VERBS.get(request.method, "get")
    if verb == "get" and request.query.get("watch") in ("1", "true"):
        verb = "watch"
    parts = [p for p in request.path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        rest = []
    if rest[:1] == ["namespaces"] and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        rest = rest[2:]
    resource = "/".join([rest[0], *rest[2:]]) if rest else "discovery"
    client = (request.headers.get("User-Agent") or "-").split(" ", 1)[0]
    return verb, resource, client


class KubeServer:
    """Routes Kubernetes API requests to a Store and renders the answers."""

    def __init__(self, store: Store, *, bookmark_interval: float = 5.0) -> None:
        self.store = store
        self.bookmark_interval = bookmark_interval
        self.address = ""  # host:port, for /api's serverAddressByClientCIDRs
        # Requests served, by (verb, resource, client): what benchmarks and tests read to count API calls.
        self.request_counts: Counter[tuple[str, str, str]] = Counter()
        self._openapi_cache: tuple[Any, dict[str, Obj]] | None = None
        self._openapi_digests: dict[str, tuple[Obj, str]] = {}  # by document key: (the document, its hash)

    def app(self) -> web.Application:
        """An aiohttp application serving every path."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Entry point: every error becomes a `Status` answer."""
        if request.path == "/_emulator/requests":
            return self._requests_admin(request)
        self.request_counts[request_key(request)] += 1
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return _json(exc.status(), exc.code)

    def _requests_admin(self, request: web.Request) -> web.StreamResponse:
        """`GET /_emulator/requests`: the counts as [{verb, resource, client, count}]; `DELETE` zeroes them."""
        if request.method == "DELETE":
            self.request_counts.clear()
            return _json({})
        rows = [{"verb": v, "resource": r, "client": c, "count": n} for (v, r, c), n in self.request_counts.items()]
        return _json({"requests": rows})

    # ---- routing --------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return _json({"paths": ["/api", "/api/v1", "/apis", "/version", "/healthz"]})
        if parts[0] in ("healthz", "readyz", "livez") and request.method == "GET":
            return web.Response(text="ok")
        if parts == ["version"]:
            return _json(SERVER_VERSION)
        if parts[:1] == ["openapi"] and request.method == "GET":
            return self._openapi(request, parts[1:])
        if parts == ["api"]:
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}],
                }
            )
        if parts == ["apis"]:
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()})
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) == 2:
            found = [g for g in self._groups() if g["name"] == parts[1]]
            if not found:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return _json({"kind": "APIGroup", "apiVersion": "v1", **found[0]})
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return self._resource_list(group, version)
        return await self._resource(request, group, version, rest)

    def _openapi_documents(self) -> dict[str, Obj]:
        """The v3 document of each group/version, rebuilt only when the served types or a CRD change."""
        crd_type = self.store.resolve("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        crds = self.store.list_objects(crd_type, None, None, None)
        key = tuple((c["metadata"]["name"], c["metadata"].get("resourceVersion")) for c in crds)
        if self._openapi_cache is None or self._openapi_cache[0] != key:
            schemas = {
                (c["spec"]["group"], v["name"], c["spec"]["names"]["kind"]): v["schema"]["openAPIV3Schema"]
                for c in crds
                for v in c["spec"].get("versions", [])
                if (v.get("schema") or {}).get("openAPIV3Schema")
            }
            self._openapi_cache = (key, openapi.group_version_documents(self.store.types(), schemas))
        return self._openapi_cache[1]

    def _openapi_digest(self, key: str, document: Obj) -> str:
        found = self._openapi_digests.get(key)
        if found is None or found[0] is not document:
            found = (document, openapi.digest(document))
            self._openapi_digests[key] = found
        return found[1]

    def _openapi(self, request: web.Request, rest: list[str]) -> web.Response:
        """`/openapi/v3` (an index with content hashes), `/openapi/v3/<api/v1|apis/g/v>`, `/openapi/v2` (JSON)."""
        documents = self._openapi_documents()
        if rest == ["v3"]:
            index = {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={self._openapi_digest(key, doc)}"}
                     for key, doc in sorted(documents.items())}  # fmt: skip
            return _json({"paths": index})
        if rest[:1] == ["v3"] and "/".join(rest[1:]) in documents:
            return _json(documents["/".join(rest[1:])])
        if rest == ["v2"]:
            accept = request.headers.get("Accept", "")
            if accept and not any(t in accept for t in ("json", "*/*")):
                # kube-apiserver serves v2 as protobuf too; this emulator only as JSON.
                raise ApiError(406, "NotAcceptable", f"only application/json is served here, not {accept}")
            return _json(openapi.v2_document(documents))
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _groups(self) -> list[Obj]:
        versions: dict[str, set[str]] = {}
        for rt in self.store.types():
            if rt.group:
                versions.setdefault(rt.group, set()).add(rt.version)
        groups = []
        for name in sorted(versions):
            ordered = sorted(versions[name], key=_version_priority)
            entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in ordered]
            groups.append({"name": name, "versions": entries, "preferredVersion": entries[0]})
        return groups

    def _resource_list(self, group: str, version: str) -> web.Response:
        resources = []
        for rt in self.store.types():
            if rt.group != group or rt.version != version:
                continue
            entry: Obj = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            resources.append(entry)
            for sub in sorted(rt.subresources):
                resources.append(
                    {
                        "name": f"{rt.plural}/{sub}",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        if not resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group_version = f"{group}/{version}" if group else version
        return _json(
            {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}
        )

    async def _resource(self, request: web.Request, group: str, version: str, rest: list[str]) -> web.StreamResponse:
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        rt = self.store.resolve(group, version, plural)
        if (namespace is not None and not rt.namespaced) or (rt.namespaced and namespace is None and name):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if subresource is not None and subresource not in rt.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        query = request.query
        dry_run = query.get("dryRun") == "All"
        field_validation = query.get("fieldValidation")
        warnings: list[str] = []
        method = request.method
        if method == "GET" and name is None:
            if query.get("watch") in ("true", "1"):
                return await self._watch(request, rt, namespace)
            return self._list(request, rt, namespace)
        if method == "GET" and name is not None:
            obj = self.store.get(rt, namespace, name)
            return self._table(request, rt, [obj]) if _wants_table(request) else _json(_present(rt, obj))
        if method == "POST" and name is None:
            created = self.store.create(
                rt, namespace, await self._body(request), dry_run=dry_run,
                field_validation=field_validation, warnings=warnings,
            )  # fmt: skip
            return _json(_present(rt, created), 201, self._warning_headers(warnings))
        if method == "PUT" and name is not None:
            replaced = self.store.replace(
                rt, namespace, name, await self._body(request), subresource=subresource, dry_run=dry_run,
                field_validation=field_validation, warnings=warnings,
            )  # fmt: skip
            return _json(_present(rt, replaced), 200, self._warning_headers(warnings))
        if method == "PATCH" and name is not None:
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            body = await self._body(request)
            # Server-side apply of an absent object creates it: 201, as kube-apiserver answers.
            applied_new = (
                content_type == APPLY_PATCH and subresource is None and not self.store.exists(rt, namespace, name)
            )
            patched = self.store.patch(
                rt, namespace, name, content_type, body, subresource=subresource,
                dry_run=dry_run, field_validation=field_validation, warnings=warnings,
            )  # fmt: skip
            return _json(_present(rt, patched), 201 if applied_new else 200, self._warning_headers(warnings))
        if method == "DELETE" and name is not None and subresource is None:
            options = await self._body(request, optional=True) or {}
            obj, gone = self.store.delete(
                rt, namespace, name, preconditions=options.get("preconditions"), dry_run=dry_run
            )
            if gone:
                meta = obj.get("metadata", {})
                return _json(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": meta.get("uid")},
                    }
                )
            return _json(_present(rt, obj))
        if method == "DELETE" and name is None:
            deleted = self.store.delete_collection(
                rt, namespace, query.get("labelSelector"), query.get("fieldSelector")
            )
            return _json(self._list_body(rt, deleted))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def _warning_headers(warnings: list[str]) -> dict[str, str] | None:
        if not warnings:
            return None
        return {"Warning": ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in warnings)}

    @staticmethod
    async def _body(request: web.Request, *, optional: bool = False) -> Any:
        raw = await request.read()
        if "protobuf" in request.headers.get("Content-Type", ""):
            try:
                return protobuf.decode(raw)
            except protobuf.Unsupported as exc:
                raise ApiError(415, "UnsupportedMediaType", f"this emulator cannot decode {exc}") from exc
        if not raw.strip():
            if optional:
                return None
            raise ApiError(400, "BadRequest", "the request body is empty")
        try:
            if "yaml" in request.headers.get("Content-Type", ""):
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"the body of the request is not valid JSON: {exc}") from exc

    # ---- lists and tables -----------------------------------------------------------------------------

    def _list_body(self, rt: ResourceType, items: list[Obj], continue_token: str | None = None) -> Obj:
        metadata: Obj = {"resourceVersion": self.store.resource_version}
        if continue_token:
            metadata["continue"] = continue_token
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.group_version,
            "metadata": metadata,
            "items": [_present(rt, o) for o in items],
        }

    def _list(self, request: web.Request, rt: ResourceType, namespace: str | None) -> web.Response:
        query = request.query
        items = self.store.list_objects(rt, namespace, query.get("labelSelector"), query.get("fieldSelector"))
        start = 0
        if query.get("continue"):
            try:
                start = int(json.loads(base64.urlsafe_b64decode(query["continue"]))["start"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ApiError(400, "BadRequest", "invalid continue token") from exc
        token = None
        limit = int(query["limit"]) if query.get("limit", "").isdigit() and int(query["limit"]) > 0 else None
        if limit is not None or start:
            end = start + limit if limit is not None else len(items)
            if end < len(items):
                token = base64.urlsafe_b64encode(json.dumps({"start": end}).encode()).decode()
            items = items[start:end]
        if _wants_table(request):
            return self._table(request, rt, items, token)
        return _json(self._list_body(rt, items, token))

    def _table(
        self, request: web.Request, rt: ResourceType, items: list[Obj], token: str | None = None
    ) -> web.Response:
        columns: list[Obj] = [
            {"name": "Name", "type": "string", "format": "name", "priority": 0,
             "description": "Name must be unique within a namespace."},
        ]  # fmt: skip
        cell_of: list[Any] = []  # per column after Name: obj -> cell
        builtin = printers.COLUMNS.get(rt.storage_key) if rt.crd_name is None else None
        if builtin is not None:
            for name, kind, description, priority, cell in builtin:
                columns.append({"name": name, "type": kind, "format": "", "description": description,
                                "priority": priority})  # fmt: skip
                cell_of.append(
                    (lambda o: _age(o["metadata"].get("creationTimestamp"))) if name == printers.AGE else cell
                )
        else:
            printer = list(rt.printer_columns) or [
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
            ]
            for column in printer:
                columns.append(
                    {
                        "name": column["name"],
                        "type": column.get("type", "string"),
                        "format": column.get("format", ""),
                        "description": column.get("description", ""),
                        "priority": column.get("priority", 0),
                    }
                )
                cell_of.append(functools.partial(_printer_cell, column))
        include = request.query.get("includeObject", "Metadata")
        rows = []
        for obj in items:
            cells: list[Any] = [obj["metadata"]["name"], *(cell(obj) for cell in cell_of)]
            row: Obj = {"cells": cells}
            if include == "Object":
                row["object"] = _present(rt, obj)
            elif include != "None":
                row["object"] = {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                }
            rows.append(row)
        metadata: Obj = {"resourceVersion": self.store.resource_version}
        if token:
            metadata["continue"] = token
        return _json(
            {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": columns,
             "rows": rows}
        )  # fmt: skip

    # ---- watch ----------------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, rt: ResourceType, namespace: str | None) -> web.StreamResponse:
        query = request.query
        bookmarks = query.get("allowWatchBookmarks") == "true"
        send_initial = query.get("sendInitialEvents") == "true"
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds", "").isdigit() else None
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            initial, watcher = self.store.watch(
                rt, namespace, query.get("labelSelector"), query.get("fieldSelector"), query.get("resourceVersion")
            )
        except ApiError as exc:
            if exc.code != 410:
                raise
            # Like the apiserver: 200, then an ERROR event carrying the 410 Status.
            await response.prepare(request)
            await response.write(self._line({"type": "ERROR", "object": exc.status()}))
            await response.write_eof()
            return response
        initial_rv = self.store.resource_version  # taken with the subscription, before any await
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            await response.prepare(request)
            for event in initial:
                await response.write(self._line({"type": event["type"], "object": _present(rt, event["object"])}))
            if send_initial:
                await response.write(self._line(self._bookmark(rt, initial_rv, initial_end=True)))
            while True:
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    wait = remaining if wait is None else min(wait, remaining)
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and (deadline is None or loop.time() < deadline):
                        # The queue is empty, so every change up to now has been sent.
                        await response.write(self._line(self._bookmark(rt, self.store.resource_version)))
                    continue
                if event is CLOSE:
                    break
                await response.write(self._line({"type": event["type"], "object": _present(rt, event["object"])}))
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away; nothing to tell it
        finally:
            self.store.unwatch(watcher)
        return response

    @staticmethod
    def _bookmark(rt: ResourceType, rv: str, *, initial_end: bool = False) -> Obj:
        metadata: Obj = {"resourceVersion": rv}
        if initial_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.group_version, "metadata": metadata}}

    @staticmethod
    def _line(event: Obj) -> bytes:
        return json.dumps(event, separators=(",", ":")).encode() + b"\n"
