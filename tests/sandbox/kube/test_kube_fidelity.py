"""Fidelity suite: each apiserver behaviour the operator relies on, pinned over HTTP, one test per behaviour."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

from kube_support import (
    EVENT_WINDOW,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Api,
    Target,
    Watch,
    crd_for,
    eventually,
    names,
    widget,
)

CREATED = (200, 201)  # test_create_answers_201 pins the exact code
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's metadata."""
    return dict(obj["metadata"])


# ---- discovery ------------------------------------------------------------------------------------------


def test_discovery_core_group_lists_builtin_kinds(api: Api) -> None:
    """/api names v1 and /api/v1 lists namespaces, secrets and events under groupVersion v1."""
    assert "v1" in api.get(f"{api.url}/api").json()["versions"]
    body = api.get(f"{api.url}/api/v1").json()
    assert body["groupVersion"] == "v1"
    assert {"namespaces", "secrets", "events"} <= {r["name"] for r in body["resources"]}


def test_discovery_lists_crd_group_with_status_subresource(api: Api) -> None:
    """/apis has the CRD's group; /apis/<g>/<v> lists the resource and its status subresource."""
    groups = {g["name"]: g for g in api.get(f"{api.url}/apis").json()["groups"]}
    assert groups[GROUP]["preferredVersion"]["groupVersion"] == f"{GROUP}/{VERSION}"
    resources = {r["name"]: r for r in api.get(f"{api.url}/apis/{GROUP}/{VERSION}").json()["resources"]}
    assert resources[PLURAL]["kind"] == KIND and resources[PLURAL]["namespaced"] is True
    assert f"{PLURAL}/status" in resources


def test_version_endpoint(api: Api) -> None:
    """/version answers with major, minor and gitVersion."""
    body = api.get(f"{api.url}/version").json()
    assert body["major"] == "1" and body["gitVersion"].startswith("v1.")


# ---- CRDs -----------------------------------------------------------------------------------------------


def _established(api: Api, name: str) -> bool:
    url = api.path("customresourcedefinitions", name, ns=None, group="apiextensions.k8s.io")
    conditions = (api.get(url).json().get("status") or {}).get("conditions") or []
    return {c["type"]: c["status"] for c in conditions}.get("Established") == "True"


def test_crd_posted_over_http_registers_its_resource(api: Api) -> None:
    """A CRD POSTed over HTTP becomes Established and its resource can be created, listed and discovered.

    A real apiserver establishes a CRD asynchronously (its answer to the POST has no conditions yet): wait.
    """
    crds = api.path("customresourcedefinitions", ns=None, group="apiextensions.k8s.io")
    created = api.post(crds, crd_for("gadgets", "Gadget"))
    assert created.status_code in CREATED, created.text
    assert eventually(lambda: _established(api, f"gadgets.{GROUP}")), "never Established"
    gadget = {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"x": 1}}
    assert eventually(lambda: api.post(api.path("gadgets", version="v1"), gadget).status_code in CREATED)
    assert [o["metadata"]["name"] for o in api.get(api.path("gadgets", version="v1")).json()["items"]] == ["g1"]

    def discovered() -> bool:
        return "gadgets" in {r["name"] for r in api.get(f"{api.url}/apis/{GROUP}/v1").json()["resources"]}

    assert eventually(discovered)


def test_crd_put_replaces_definition(api: Api) -> None:
    """PUT on a CRD (kubectl replace/apply) changes what discovery serves, e.g. a new short name.

    The PUT carries the CRD as read last (its status changes once it is Established); discovery follows soon.
    """
    url = api.path("customresourcedefinitions", ns=None, group="apiextensions.k8s.io")
    api.post(url, crd_for("gizmos", "Gizmo"))
    assert eventually(lambda: _established(api, f"gizmos.{GROUP}"))
    crd = api.get(f"{url}/gizmos.{GROUP}").json()
    crd["spec"]["names"]["shortNames"] = ["gz"]
    replaced = api.put(f"{url}/gizmos.{GROUP}", crd)
    assert replaced.status_code == 200, replaced.text

    def short_names() -> Any:
        resources = {r["name"]: r for r in api.get(f"{api.url}/apis/{GROUP}/v1").json()["resources"]}
        return resources.get("gizmos", {}).get("shortNames") == ["gz"]

    assert eventually(short_names), api.get(f"{api.url}/apis/{GROUP}/v1").json()


def test_crd_delete_removes_resource_and_its_objects(api: Api) -> None:
    """Deleting a CRD removes its objects and then the resource itself (404 afterwards)."""
    url = api.path("customresourcedefinitions", ns=None, group="apiextensions.k8s.io")
    api.post(url, crd_for("doohickeys", "Doohickey"))
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Doohickey", "metadata": {"name": "d1"}}
    assert eventually(lambda: api.post(api.path("doohickeys", version="v1"), body).status_code in CREATED)
    assert api.delete(f"{url}/doohickeys.{GROUP}").status_code == 200
    # A real apiserver deletes the objects first (the CRD's customresourcecleanup finalizer), then the CRD.
    assert eventually(lambda: api.get(f"{url}/doohickeys.{GROUP}").status_code == 404)
    assert eventually(lambda: api.get(api.path("doohickeys", version="v1")).status_code == 404)


def test_create_of_unknown_resource_is_404(api: Api) -> None:
    """POSTing to a resource no CRD defines is 404, not an implicit new resource."""
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Nothing", "metadata": {"name": "n"}}
    assert api.post(api.path("nothings", version="v1"), body).status_code == 404


def test_kopf_peering_crd_works_as_plain_crd(api: Api) -> None:
    """kopf's ClusterKopfPeering CRD registers like any CRD and its cluster-scoped objects can be created."""
    crd = crd_for("clusterkopfpeerings", "ClusterKopfPeering", group="kopf.dev", scope="Cluster")
    url = api.path("customresourcedefinitions", ns=None, group="apiextensions.k8s.io")
    assert api.post(url, crd).status_code in CREATED
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "default"}}
    peerings = api.path("clusterkopfpeerings", ns=None, group="kopf.dev", version="v1")
    assert eventually(lambda: api.post(peerings, peering).status_code in CREATED)
    created = api.get(f"{peerings}/default")
    assert created.status_code == 200, created.text
    assert "namespace" not in created.json()["metadata"]


# ---- object identity and versions -------------------------------------------------------------------------


def test_create_fills_uid_timestamp_generation_and_resource_version(api: Api) -> None:
    """A created object has uid, creationTimestamp, generation 1 and a resourceVersion."""
    m = meta(api.create_widget())
    assert m["uid"] and m["creationTimestamp"] and m["generation"] == 1 and m["resourceVersion"]
    assert m["namespace"] == api.ns


def test_create_answers_201(api: Api) -> None:
    """A successful create answers 201 Created."""
    assert api.post(api.path(), widget("w1")).status_code == 201


def test_resource_version_changes_on_every_write(api: Api) -> None:
    """Every write gives the object a new resourceVersion."""
    first = meta(api.create_widget())["resourceVersion"]
    second = meta(api.patch(api.path(name="w1"), {"metadata": {"labels": {"a": "b"}}}).json())["resourceVersion"]
    third = meta(api.patch(api.path(name="w1", sub="status"), {"status": {"phase": "x"}}).json())
    assert len({first, second, third["resourceVersion"]}) == 3


def test_put_with_stale_resource_version_is_409(api: Api) -> None:
    """PUT carrying an old resourceVersion is rejected with 409 Conflict."""
    stale = api.create_widget()
    api.patch(api.path(name="w1"), {"spec": {"size": 2}})
    stale["spec"]["size"] = 3
    response = api.put(api.path(name="w1"), stale)
    assert response.status_code == 409 and response.json()["reason"] == "Conflict"


def test_merge_patch_with_stale_resource_version_is_409(api: Api) -> None:
    """A merge patch that names an old resourceVersion is a precondition and fails with 409."""
    old_rv = meta(api.create_widget())["resourceVersion"]
    api.patch(api.path(name="w1"), {"spec": {"size": 2}})
    response = api.patch(api.path(name="w1"), {"metadata": {"resourceVersion": old_rv}, "spec": {"size": 5}})
    assert response.status_code == 409


def test_noop_patch_keeps_resource_version(api: Api) -> None:
    """A patch that changes nothing leaves resourceVersion alone (no write, no watch event)."""
    rv = meta(api.create_widget())["resourceVersion"]
    after = api.patch(api.path(name="w1"), {"spec": {"size": 1}}).json()
    assert meta(after)["resourceVersion"] == rv


def test_generation_bumps_on_spec_changes_only(api: Api) -> None:
    """metadata and status writes keep generation; a spec change increments it."""
    api.create_widget()
    labelled = api.patch(api.path(name="w1"), {"metadata": {"labels": {"x": "y"}}}).json()
    status = api.patch(api.path(name="w1", sub="status"), {"status": {"phase": "Ready"}}).json()
    spec = api.patch(api.path(name="w1"), {"spec": {"size": 7}}).json()
    assert [meta(labelled)["generation"], meta(status)["generation"], meta(spec)["generation"]] == [1, 1, 2]


# ---- status subresource ---------------------------------------------------------------------------------


def test_status_on_create_is_dropped(api: Api) -> None:
    """With a status subresource, status sent on create is ignored."""
    body = widget("w1")
    body["status"] = {"phase": "Faked"}
    assert "status" not in api.post(api.path(), body).json()


def test_main_resource_patch_ignores_status(api: Api) -> None:
    """Status written on the main resource is ignored when status is a subresource."""
    api.create_widget()
    patched = api.patch(api.path(name="w1"), {"spec": {"size": 3}, "status": {"phase": "Sneaky"}}).json()
    assert patched["spec"]["size"] == 3 and "status" not in patched


def test_status_patch_ignores_spec(api: Api) -> None:
    """A /status patch changes status only; spec in it is ignored."""
    api.create_widget()
    patched = api.patch(api.path(name="w1", sub="status"), {"spec": {"size": 9}, "status": {"phase": "Ok"}}).json()
    assert patched["status"]["phase"] == "Ok" and patched["spec"]["size"] == 1


# ---- patches ------------------------------------------------------------------------------------------


def test_merge_patch_null_removes_a_key(api: Api) -> None:
    """In a merge patch null deletes the key and lists are replaced whole."""
    api.create_widget(labels={"a": "1", "b": "2"})
    patched = api.patch(api.path(name="w1"), {"metadata": {"labels": {"a": None}}, "spec": {"tags": ["x"]}})
    assert meta(patched.json())["labels"] == {"b": "2"} and patched.json()["spec"]["tags"] == ["x"]


def test_json_patch_applies_operations_in_order(api: Api) -> None:
    """A JSON patch with a passing test op applies add/replace/remove."""
    rv = meta(api.create_widget(labels={"gone": "x"}))["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "replace", "path": "/spec/size", "value": 4},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/f"]},
        {"op": "remove", "path": "/metadata/labels/gone"},
    ]
    body = api.patch(api.path(name="w1"), ops, kind="json").json()
    assert body["spec"]["size"] == 4 and meta(body)["finalizers"] == ["example.com/f"]
    assert "gone" not in (meta(body).get("labels") or {})


def test_json_patch_failed_test_is_422(api: Api) -> None:
    """A JSON patch whose test op fails is 422 Invalid and changes nothing (kopf relies on it)."""
    api.create_widget()
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
           {"op": "replace", "path": "/spec/size", "value": 4}]  # fmt: skip
    response = api.patch(api.path(name="w1"), ops, kind="json")
    assert response.status_code == 422
    assert api.get(api.path(name="w1")).json()["spec"]["size"] == 1


def test_strategic_merge_patch_on_custom_resource_is_415(api: Api) -> None:
    """Custom resources do not accept strategic-merge patches (415), as on a real apiserver."""
    api.create_widget()
    assert api.patch(api.path(name="w1"), {"spec": {"size": 2}}, kind="strategic").status_code == 415


def test_dry_run_does_not_persist(api: Api) -> None:
    """?dryRun=All validates and answers but stores nothing."""
    response = api.post(api.path(), widget("dry"), params={"dryRun": "All"})
    assert response.status_code in CREATED
    assert api.get(api.path(name="dry")).status_code == 404


# ---- schema -------------------------------------------------------------------------------------------


def test_schema_type_violation_is_422_naming_the_field(api: Api) -> None:
    """A value of the wrong type is 422 Invalid with a cause naming spec.size."""
    body = widget("bad")
    body["spec"]["size"] = "big"
    response = api.post(api.path(), body)
    assert response.status_code == 422
    assert "spec.size" in [c["field"] for c in response.json()["details"]["causes"]]


def test_schema_missing_required_field_is_422(api: Api) -> None:
    """A missing required field is 422 naming it."""
    body = widget("bad")
    del body["spec"]["size"]
    response = api.post(api.path(), body)
    assert response.status_code == 422 and "spec.size" in response.json()["message"]


def test_schema_violation_on_patch_is_422(api: Api) -> None:
    """A patch that breaks the schema (enum) is 422 and leaves the object unchanged."""
    api.create_widget()
    response = api.patch(api.path(name="w1"), {"spec": {"color": "green"}})
    assert response.status_code == 422 and "spec.color" in response.json()["message"]


def test_unknown_field_is_rejected_naming_it(api: Api) -> None:
    """Strict field validation rejects an undeclared field and names it (400 BadRequest as on kube 1.27+)."""
    body = widget("bad")
    body["spec"]["bogus"] = True
    response = api.post(api.path(), body, params={"fieldValidation": "Strict"})
    assert response.status_code == 400 and 'unknown field "spec.bogus"' in response.json()["message"]


def test_unknown_field_is_pruned_when_validation_ignored(api: Api) -> None:
    """With fieldValidation=Ignore an undeclared field is pruned, while preserve-unknown-fields keeps its data."""
    body = widget("w1")
    body["spec"]["bogus"] = True
    body["spec"]["extra"] = {"anything": {"goes": 1}}
    created = api.post(api.path(), body, params={"fieldValidation": "Ignore"}).json()
    assert "bogus" not in created["spec"] and created["spec"]["extra"] == {"anything": {"goes": 1}}


def test_unknown_field_without_validation_parameter_is_pruned_with_warning(api: Api) -> None:
    """Without ?fieldValidation= (kopf, the Python client) an undeclared field is pruned with a Warning header."""
    body = widget("w1")
    body["spec"]["bogus"] = True
    response = api.post(api.path(), body)
    assert "bogus" not in response.json()["spec"]
    assert 'unknown field \\"spec.bogus\\"' in response.headers.get("Warning", "")


def test_schema_defaults_are_applied(api: Api) -> None:
    """Schema defaults fill absent fields on create."""
    assert api.create_widget()["spec"]["color"] == "red"


# ---- finalizers and deletion ------------------------------------------------------------------------------


def test_finalizer_keeps_object_until_removed(api: Api) -> None:
    """DELETE on an object with a finalizer sets deletionTimestamp; removing the finalizer deletes it."""
    api.create_widget(finalizers=["example.com/f"])
    deleted = api.delete(api.path(name="w1"))
    assert deleted.status_code == 200
    still = api.get(api.path(name="w1"))
    assert still.status_code == 200 and meta(still.json()).get("deletionTimestamp")
    api.patch(api.path(name="w1"), {"metadata": {"finalizers": None}})
    assert api.get(api.path(name="w1")).status_code == 404


def test_no_new_finalizer_while_deleting(api: Api) -> None:
    """A finalizer cannot be added to an object that is being deleted (422)."""
    api.create_widget(finalizers=["example.com/f"])
    api.delete(api.path(name="w1"))
    response = api.patch(api.path(name="w1"), {"metadata": {"finalizers": ["example.com/f", "example.com/g"]}})
    assert response.status_code == 422


def test_delete_precondition_uid_mismatch_is_409(api: Api) -> None:
    """DeleteOptions preconditions that do not match are a 409."""
    api.create_widget()
    response = api.delete(api.path(name="w1"), {"preconditions": {"uid": "not-the-uid"}})
    assert response.status_code == 409 and api.get(api.path(name="w1")).status_code == 200


def test_delete_collection_by_label(api: Api) -> None:
    """DELETE on a collection with a labelSelector deletes only the matching objects."""
    api.create_widget("a", labels={"t": "x"})
    api.create_widget("b", labels={"t": "y"})
    api.delete(api.path(), params={"labelSelector": "t=x"})
    assert [meta(o)["name"] for o in api.get(api.path()).json()["items"]] == ["b"]


# ---- lists ----------------------------------------------------------------------------------------------


def test_list_has_kind_and_resource_version(api: Api) -> None:
    """A list answers <Kind>List with metadata.resourceVersion not older than its items."""
    rv = int(meta(api.create_widget())["resourceVersion"])
    body = api.get(api.path()).json()
    assert body["kind"] == f"{KIND}List" and int(body["metadata"]["resourceVersion"]) >= rv


def test_list_across_namespaces(api: Api) -> None:
    """The cluster-wide URL of a namespaced resource lists every namespace (here: the test's and `other`)."""
    api.post(api.path("namespaces", ns=None, group="", version="v1"), {"metadata": {"name": "other"}})
    api.create_widget("a")
    api.post(api.path(ns="other"), widget("b"))
    items = api.get(api.path(ns=None)).json()["items"]
    # On the real control plane other tests' namespaces hold widgets too.
    found = sorted((meta(o)["namespace"], meta(o)["name"]) for o in items if meta(o)["namespace"] in (api.ns, "other"))
    assert found == [(api.ns, "a"), ("other", "b")]


def test_label_selectors_equality_and_set_based(api: Api) -> None:
    """labelSelector supports =, !=, in, notin, exists and !exists."""
    api.create_widget("a", labels={"app": "x", "tier": "1"})
    api.create_widget("b", labels={"app": "y"})
    api.create_widget("c")

    def select(selector: str) -> list[str]:
        return [meta(o)["name"] for o in api.get(api.path(), params={"labelSelector": selector}).json()["items"]]

    assert select("app=x") == ["a"]
    assert select("app!=x") == ["b", "c"]
    assert select("app in (x,y)") == ["a", "b"]
    assert select("app notin (x)") == ["b", "c"]
    assert select("tier") == ["a"]
    assert select("!app") == ["c"]


def test_field_selector_on_name(api: Api) -> None:
    """fieldSelector=metadata.name=<n> selects one object (kubectl wait and delete use it)."""
    api.create_widget("a")
    api.create_widget("b")
    items = api.get(api.path(), params={"fieldSelector": "metadata.name=b"}).json()["items"]
    assert [meta(o)["name"] for o in items] == ["b"]


def test_list_paging_with_limit_and_continue(api: Api) -> None:
    """limit and continue page through a list without losing or repeating items."""
    for name in ("a", "b", "c"):
        api.create_widget(name)
    first = api.get(api.path(), params={"limit": "2"}).json()
    token = first["metadata"].get("continue")
    assert token and len(first["items"]) == 2
    second = api.get(api.path(), params={"limit": "2", "continue": token}).json()
    assert [meta(o)["name"] for o in first["items"] + second["items"]] == ["a", "b", "c"]


def test_generate_name_gives_unique_names(api: Api) -> None:
    """generateName makes a fresh name each time; two creates both succeed."""
    first = api.post(api.path(), widget(None, generateName="gen-"))
    second = api.post(api.path(), widget(None, generateName="gen-"))
    assert first.status_code in CREATED and second.status_code in CREATED
    a, b = meta(first.json())["name"], meta(second.json())["name"]
    assert a != b and a.startswith("gen-") and b.startswith("gen-")


def test_table_output_uses_printer_columns(api: Api) -> None:
    """Accept: as=Table returns the CRD's additionalPrinterColumns with evaluated cells (kubectl get)."""
    api.create_widget("w1", size=5)
    api.patch(api.path(name="w1", sub="status"), {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    table = api.get(api.path(), headers={"Accept": TABLE}).json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Ready", "Age"]
    assert table["rows"][0]["cells"][:3] == ["w1", 5, "True"]


# ---- watch ----------------------------------------------------------------------------------------------


def test_watch_without_resource_version_starts_with_existing_objects(api: Api) -> None:
    """A watch without resourceVersion first sends ADDED for every existing object."""
    api.create_widget("a")
    watch = Watch(api, api.path(), {})
    events = watch.wait_for(lambda ev: len(names(ev)) >= 1)
    watch.close()
    assert names(events)[:1] == ["ADDED a"]


def test_watch_reports_added_modified_deleted(api: Api) -> None:
    """A live watch sees ADDED, MODIFIED and DELETED with the new resourceVersions."""
    rv = api.get(api.path()).json()["metadata"]["resourceVersion"]
    watch = Watch(api, api.path(), {"resourceVersion": rv})
    api.create_widget("a")
    api.patch(api.path(name="a"), {"spec": {"size": 2}})
    api.delete(api.path(name="a"))
    events = watch.wait_for(lambda ev: len(names(ev)) >= 3)
    watch.close()
    assert names(events) == ["ADDED a", "MODIFIED a", "DELETED a"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events if e["type"] != "BOOKMARK"]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


def test_watch_is_json_stream(api: Api) -> None:
    """Watch answers Content-Type application/json (client-go and kubectl -w need it)."""
    watch = Watch(api, api.path(), {})
    watch.close()
    assert watch.content_type.startswith("application/json")


def test_watch_from_list_resource_version_loses_nothing(api: Api) -> None:
    """Changes made between a list and the watch from its resourceVersion all arrive, in order."""
    rv = api.get(api.path()).json()["metadata"]["resourceVersion"]
    for index in range(5):
        api.create_widget(f"w{index}")
    writer = threading.Thread(target=lambda: [api.create_widget(f"late{i}") for i in range(5)])
    watch = Watch(api, api.path(), {"resourceVersion": rv})
    writer.start()
    writer.join()
    expected = [f"ADDED w{i}" for i in range(5)] + [f"ADDED late{i}" for i in range(5)]
    events = watch.wait_for(lambda ev: len(names(ev)) >= 10)
    watch.close()
    assert names(events) == expected


def test_watch_send_initial_events_ends_with_bookmark(api: Api) -> None:
    """sendInitialEvents=true sends the existing objects then a BOOKMARK marked initial-events-end."""
    api.create_widget("a")
    params = {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan", "allowWatchBookmarks": "true"}
    watch = Watch(api, api.path(), params)
    events = watch.wait_for(lambda ev: any(e["type"] == "BOOKMARK" for e in ev))
    watch.close()
    assert events[0]["type"] == "ADDED" and events[1]["type"] == "BOOKMARK"
    annotations = events[1]["object"]["metadata"].get("annotations", {})
    assert annotations.get("k8s.io/initial-events-end") == "true"


def test_watch_sends_periodic_bookmarks(api: Api, target: Target) -> None:
    """allowWatchBookmarks=true yields BOOKMARK events carrying a current resourceVersion, once per period.

    The period is the server's: a real apiserver sends one about every minute (this test waits that long on
    it), the emulator every `bookmark_interval` seconds (0.3 s here). A real apiserver's watch cache bookmarks only
    a resourceVersion newer than the one the watch started from, hence the write after the watch starts; and it
    may end a young watch early (its CRD's storage settling), so the test watches again from the same
    resourceVersion, as every client does.
    """
    api.create_widget("w1")
    rv = api.get(api.path()).json()["metadata"]["resourceVersion"]
    period = target.bookmark_period
    deadline = time.monotonic() + period * 1.5 + 10
    bookmarks: list[dict[str, Any]] = []
    while not bookmarks and time.monotonic() < deadline:
        watch = Watch(api, api.path(), {"resourceVersion": rv, "allowWatchBookmarks": "true"}, read_timeout=period + 30)
        api.patch(api.path(name="w1"), {"metadata": {"labels": {"written": str(time.monotonic_ns())}}})
        while not watch.closed.is_set() and time.monotonic() < deadline:
            seen = watch.wait_for(lambda ev: any(e["type"] == "BOOKMARK" for e in ev), timeout=1)
            bookmarks = [e for e in seen if e["type"] == "BOOKMARK"]
            if bookmarks:
                break
        watch.close()
    assert bookmarks and int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_watch_with_too_old_resource_version_gets_410(api: Api) -> None:
    """A watch from a resourceVersion the server has forgotten gets an ERROR event with code 410.

    Forgotten: older than the emulator's event window (EVENT_WINDOW writes, made here) and than the real
    apiserver's watch cache (which starts at the list it made when the resource appeared): resourceVersion 1.
    """
    api.create_widget("a")
    for size in range(2, EVENT_WINDOW + 10):
        api.patch(api.path(name="a"), {"spec": {"size": size}})
    watch = Watch(api, api.path(), {"resourceVersion": "1"})
    events = watch.wait_for(bool)
    watch.close()
    assert events and events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


def test_watch_honours_label_selector(api: Api) -> None:
    """A watch with a labelSelector gets only matching objects; one that stops matching arrives as DELETED."""
    rv = api.get(api.path()).json()["metadata"]["resourceVersion"]
    watch = Watch(api, api.path(), {"resourceVersion": rv, "labelSelector": "app=x"})
    api.create_widget("a", labels={"app": "x"})
    api.create_widget("b", labels={"app": "y"})
    api.patch(api.path(name="a"), {"metadata": {"labels": {"app": "z"}}})
    events = watch.wait_for(lambda ev: len(names(ev)) >= 2)
    watch.close()
    assert names(events) == ["ADDED a", "DELETED a"]


def test_watch_stream_ends_on_restart_and_resumes_from_resource_version(api: Api, target: Target) -> None:
    """After the server closes a stream, a new watch from the last resourceVersion misses nothing."""
    if target.flavour == "kmock":
        time.sleep(0)  # kmock cannot close streams; the resume half still runs
    rv = api.get(api.path()).json()["metadata"]["resourceVersion"]
    watch = Watch(api, api.path(), {"resourceVersion": rv})
    api.create_widget("a")
    first = watch.wait_for(lambda ev: len(names(ev)) >= 1)
    target.restart_watches()
    assert watch.closed.wait(3), "stream not closed by restart_watches()"
    last_rv = first[-1]["object"]["metadata"]["resourceVersion"]
    api.create_widget("b")
    resumed = Watch(api, api.path(), {"resourceVersion": last_rv})
    events = resumed.wait_for(lambda ev: len(names(ev)) >= 1)
    resumed.close()
    assert names(events) == ["ADDED b"]


# ---- namespaces -----------------------------------------------------------------------------------------


def test_namespaces_list_and_get(api: Api) -> None:
    """GET /api/v1/namespaces lists default and GET /api/v1/namespaces/default answers it."""
    url = api.path("namespaces", ns=None, group="", version="v1")
    listed = api.get(url)
    assert listed.status_code == 200 and "default" in [meta(o)["name"] for o in listed.json()["items"]]
    assert api.get(f"{url}/default").json()["status"]["phase"] == "Active"


def test_create_in_missing_namespace_is_404(api: Api) -> None:
    """Creating in a namespace that does not exist is 404."""
    assert api.post(api.path(ns="nowhere"), widget("w")).status_code == 404


def test_namespace_delete_cascades_to_its_objects(api: Api) -> None:
    """Deleting a namespace deletes what is in it, then the namespace itself (the namespace controller's work:
    asynchronous on a real cluster, so the test waits)."""
    ns_url = api.path("namespaces", ns=None, group="", version="v1")
    api.post(ns_url, {"metadata": {"name": "doomed"}})
    api.post(api.path(ns="doomed"), widget("w"))
    api.delete(f"{ns_url}/doomed")
    assert eventually(lambda: api.get(api.path(name="w", ns="doomed")).status_code == 404, timeout=60)
    assert eventually(lambda: api.get(f"{ns_url}/doomed").status_code == 404, timeout=60)


def test_namespace_delete_waits_for_finalizers(api: Api) -> None:
    """A namespace stays Terminating (refusing new objects) until its objects' finalizers are removed."""
    ns_url = api.path("namespaces", ns=None, group="", version="v1")
    api.post(ns_url, {"metadata": {"name": "slow"}})
    api.post(api.path(ns="slow"), widget("w", finalizers=["example.com/f"]))
    api.delete(f"{ns_url}/slow")
    assert api.get(f"{ns_url}/slow").json()["status"]["phase"] == "Terminating"
    assert api.post(api.path(ns="slow"), widget("new")).status_code == 403
    # The namespace controller marks the object for deletion; its finalizer holds it (and the namespace).
    assert eventually(lambda: meta(api.get(api.path(name="w", ns="slow")).json()).get("deletionTimestamp"))
    assert api.get(f"{ns_url}/slow").json()["status"]["phase"] == "Terminating"
    api.patch(api.path(name="w", ns="slow"), {"metadata": {"finalizers": None}})
    assert eventually(lambda: api.get(f"{ns_url}/slow").status_code == 404, timeout=60)


# ---- built-in kinds ---------------------------------------------------------------------------------------


def test_secret_string_data_is_stored_base64(api: Api) -> None:
    """A Secret's stringData is merged into data, base64-encoded, with type Opaque."""
    url = api.path("secrets", group="", version="v1")
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}
    created = api.post(url, body).json()
    assert created["data"] == {"k": base64.b64encode(b"v").decode()} and "stringData" not in created
    assert created["type"] == "Opaque"


def test_core_events_with_generate_name(api: Api) -> None:
    """Core v1 Events created with generateName (as kopf posts them: `<name>.`) all succeed and list; the
    involved object's namespace must be the Event's (422 otherwise)."""
    url = api.path("events", group="", version="v1")
    for _ in range(3):
        event: dict[str, Any] = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "w1."},
                 "involvedObject": {"kind": KIND, "name": "w1", "namespace": api.ns}, "reason": "Logging",
                 "message": "m", "type": "Normal"}  # fmt: skip
        assert api.post(url, event).status_code in CREATED
    assert len(api.get(url).json()["items"]) == 3
    elsewhere = {**event, "involvedObject": {"kind": KIND, "name": "w1", "namespace": "other"}}
    refused = api.post(url, elsewhere)
    assert refused.status_code == 422 and "involvedObject.namespace" in refused.text


def test_events_k8s_io_v1(api: Api) -> None:
    """events.k8s.io/v1 Events can be created and listed; unlike core v1 Events their generateName must be a
    valid name prefix (`e.` is refused, 422)."""
    url = api.path("events", group="events.k8s.io", version="v1")
    event = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"generateName": "e-"},
             "regarding": {"kind": KIND, "name": "w1", "namespace": api.ns}, "reason": "Done", "note": "n",
             "type": "Normal", "action": "Reconcile", "reportingController": "example.com/x",
             "reportingInstance": "y", "eventTime": "2026-01-01T00:00:00.000000Z"}  # fmt: skip
    assert api.post(url, event).status_code in CREATED
    assert len(api.get(url).json()["items"]) == 1
    refused = api.post(url, {**event, "metadata": {"generateName": "e."}})
    assert refused.status_code == 422 and "metadata.generateName" in refused.text


def test_leases_use_optimistic_concurrency(api: Api) -> None:
    """coordination.k8s.io Leases are created and a stale update is a 409."""
    url = api.path("leases", group="coordination.k8s.io", version="v1")
    lease = api.post(url, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
                           "spec": {"holderIdentity": "a"}}).json()  # fmt: skip
    lease["spec"]["holderIdentity"] = "b"
    assert api.put(f"{url}/l", lease).status_code == 200
    lease["spec"]["holderIdentity"] = "c"
    assert api.put(f"{url}/l", lease).status_code == 409


# ---- garbage collection ---------------------------------------------------------------------------------


def _owned_secret(api: Api, owner: dict[str, Any]) -> str:
    url = api.path("secrets", group="", version="v1")
    ref = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": meta(owner)["name"], "uid": meta(owner)["uid"]}
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "owned", "ownerReferences": [ref]}}
    assert api.post(url, body).status_code in CREATED
    return f"{url}/owned"


def test_owner_reference_garbage_collection(api: Api) -> None:
    """Deleting the owner deletes objects whose ownerReferences point at it (in the background: no server
    promises when, so the test waits)."""
    secret_url = _owned_secret(api, api.create_widget())
    api.delete(api.path(name="w1"))
    assert eventually(lambda: api.get(secret_url).status_code == 404, timeout=60)


def test_garbage_collection_waits_for_owner_finalizers(api: Api) -> None:
    """Dependents survive while the owner is only marked for deletion, and go once it is gone."""
    secret_url = _owned_secret(api, api.create_widget(finalizers=["example.com/f"]))
    api.delete(api.path(name="w1"))
    assert api.get(secret_url).status_code == 200
    api.patch(api.path(name="w1"), {"metadata": {"finalizers": None}})
    assert eventually(lambda: api.get(secret_url).status_code == 404, timeout=60)


# ---- what a chart installs: Services, Deployments, RBAC, NetworkPolicies ------------------------------------


def _resources(api: Api, group_version: str) -> dict[str, dict[str, Any]]:
    prefix = "api" if group_version == "v1" else "apis"
    body = api.get(f"{api.url}/{prefix}/{group_version}").json()
    return {r["name"]: r for r in body["resources"]}


def _deployment(name: str = "d", image: str = "example.com/app:1.0") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "env": [{"name": "A", "value": "1"}]},
                        {"name": "sidecar", "image": "example.com/sidecar:2"},
                    ]
                },
            },
        },
    }


def test_services_v1(api: Api) -> None:
    """Services: discovered with /status, created with a ClusterIP and defaults, listed, status kept apart, deleted."""
    resources = _resources(api, "v1")
    assert resources["services"]["namespaced"] is True and "svc" in resources["services"]["shortNames"]
    assert "services/status" in resources
    url = api.path("services", group="", version="v1")
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}}  # fmt: skip
    created = api.post(url, body)
    assert created.status_code == 201, created.text
    spec = created.json()["spec"]
    assert spec["type"] == "ClusterIP" and spec["clusterIP"].startswith("10.")
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert [meta(o)["name"] for o in api.get(url).json()["items"]] == ["s"]
    status = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    refused = api.patch(f"{url}/s/status", {"status": status})
    assert refused.status_code == 422 and "status.loadBalancer.ingress" in refused.text  # not a LoadBalancer
    balanced = {**body, "metadata": {"name": "lb"}, "spec": {**body["spec"], "type": "LoadBalancer"}}
    assert api.post(url, balanced).status_code == 201
    reported = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}}  # ipMode defaulted
    assert api.patch(f"{url}/lb/status", {"status": status}).json()["status"] == reported
    assert api.patch(f"{url}/lb", {"status": {"loadBalancer": {}}}).json()["status"] == reported
    assert api.post(url, {**body, "metadata": {"name": "noports"}, "spec": {}}).status_code == 422
    assert api.delete(f"{url}/s").status_code == 200
    assert api.get(f"{url}/s").status_code == 404


def test_deployments_apps_v1(api: Api) -> None:
    """Deployments: discovered under apps/v1, defaulted, generation moves with spec only, no controller acts."""
    groups = {g["name"] for g in api.get(f"{api.url}/apis").json()["groups"]}
    assert "apps" in groups
    resources = _resources(api, "apps/v1")
    assert resources["deployments"]["namespaced"] is True and "deployments/status" in resources
    url = api.path("deployments", group="apps", version="v1")
    created = api.post(url, _deployment())
    assert created.status_code == 201, created.text
    obj = created.json()
    assert obj["spec"]["replicas"] == 1 and obj["spec"]["strategy"]["type"] == "RollingUpdate"
    assert obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert meta(obj)["generation"] == 1 and obj["status"] == {}
    labelled = api.patch(f"{url}/d", {"metadata": {"labels": {"x": "y"}}}).json()
    assert meta(labelled)["generation"] == 1
    scaled = api.patch(f"{url}/d", {"spec": {"replicas": 3}}).json()
    assert meta(scaled)["generation"] == 2
    reported = api.patch(f"{url}/d/status", {"status": {"observedGeneration": 2, "replicas": 3}}).json()
    assert meta(reported)["generation"] == 2 and reported["status"]["replicas"] == 3
    assert [meta(o)["name"] for o in api.get(url).json()["items"]] == ["d"]
    # No deployment controller runs: no ReplicaSet (the emulator has no ReplicaSet API; the real one stays empty).
    replicasets = api.get(api.path("replicasets", group="apps", version="v1"))
    assert replicasets.status_code == 404 or replicasets.json()["items"] == []
    assert api.delete(f"{url}/d").status_code == 200
    assert api.get(f"{url}/d").status_code == 404


def test_deployment_selector_must_match_template_and_is_immutable(api: Api) -> None:
    """A Deployment whose selector misses its template's labels is 422, and so is changing the selector."""
    url = api.path("deployments", group="apps", version="v1")
    wrong = _deployment()
    wrong["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    rejected = api.post(url, wrong)
    assert rejected.status_code == 422
    assert rejected.json()["details"]["causes"][0]["field"] == "spec.template.metadata.labels"
    api.post(url, _deployment())
    changed = api.patch(f"{url}/d", {"spec": {"selector": {"matchLabels": {"app": "d", "tier": "x"}},
                                              "template": {"metadata": {"labels": {"tier": "x"}}}}})  # fmt: skip
    assert changed.status_code == 422 and changed.json()["details"]["causes"][0]["field"] == "spec.selector"


def test_strategic_merge_patch_merges_lists_by_key(api: Api) -> None:
    """kubectl apply's strategic patch merges containers by name, env by name, honours $setElementOrder/$retainKeys."""
    url = api.path("deployments", group="apps", version="v1")
    api.post(url, _deployment())
    patch = {"spec": {
        "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
        "template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "image": "example.com/app:2.0",
                            "$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
                            "env": [{"name": "B", "value": "2"}]}],
        }},
    }}  # fmt: skip
    patched = api.patch(f"{url}/d", patch, kind="strategic")
    assert patched.status_code == 200, patched.text
    spec = patched.json()["spec"]
    assert spec["strategy"] == {"type": "Recreate"}
    containers = spec["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("app", "example.com/app:2.0"), ("sidecar", "example.com/sidecar:2")
    ]  # fmt: skip
    assert containers[0]["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    assert not any(key.startswith("$") for key in containers[0])


def test_rbac_authorization_k8s_io_v1(api: Api) -> None:
    """Roles/RoleBindings are namespaced, ClusterRoles/ClusterRoleBindings cluster-scoped; roleRef is immutable."""
    resources = _resources(api, "rbac.authorization.k8s.io/v1")
    scope = {name: resources[name]["namespaced"] for name in resources}
    assert scope == {"roles": True, "rolebindings": True, "clusterroles": False, "clusterrolebindings": False}
    group = "rbac.authorization.k8s.io"
    rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    cluster_roles = api.path("clusterroles", ns=None, group=group, version="v1")
    created = api.post(cluster_roles, {"apiVersion": f"{group}/v1", "kind": "ClusterRole",
                                       "metadata": {"name": "reader"}, "rules": [rule]})  # fmt: skip
    assert created.status_code == 201, created.text
    assert "namespace" not in meta(created.json())
    assert api.get(api.path("clusterroles", "reader", group=group, version="v1")).status_code == 404
    # A real cluster also holds its bootstrap roles (cluster-admin, system:*).
    assert "reader" in [meta(o)["name"] for o in api.get(cluster_roles).json()["items"]]
    roles = api.path("roles", group=group, version="v1")
    assert api.post(roles, {"apiVersion": f"{group}/v1", "kind": "Role", "metadata": {"name": "r"},
                            "rules": [rule]}).status_code == 201  # fmt: skip
    assert meta(api.get(f"{roles}/r").json())["namespace"] == api.ns
    bindings = api.path("clusterrolebindings", ns=None, group=group, version="v1")
    binding = {"apiVersion": f"{group}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "b"},
               "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}]}  # fmt: skip
    assert api.post(bindings, binding).status_code == 201
    moved = api.patch(f"{bindings}/b", {"roleRef": {"name": "writer"}})
    assert moved.status_code == 422 and "roleRef: Invalid value" in moved.json()["message"]
    assert "field is immutable" in moved.json()["message"]
    assert api.delete(f"{cluster_roles}/reader").status_code == 200
    assert api.get(f"{cluster_roles}/reader").status_code == 404


def test_networkpolicies_networking_k8s_io_v1(api: Api) -> None:
    """NetworkPolicies: discovered under networking.k8s.io/v1, policyTypes and port protocols defaulted, deleted."""
    assert _resources(api, "networking.k8s.io/v1")["networkpolicies"]["namespaced"] is True
    url = api.path("networkpolicies", group="networking.k8s.io", version="v1")
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np"},
            "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "egress": [{"ports": [{"port": 443}]}]}}  # fmt: skip
    created = api.post(url, body)
    assert created.status_code == 201, created.text
    spec = created.json()["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["egress"][0]["ports"][0]["protocol"] == "TCP"
    assert [meta(o)["name"] for o in api.get(url).json()["items"]] == ["np"]
    assert api.delete(f"{url}/np").status_code == 200
    assert api.get(f"{url}/np").status_code == 404
