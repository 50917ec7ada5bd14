"""The emulator counts the requests it serves by verb, resource and client, for benchmarks to read."""

from __future__ import annotations

import requests

from opsramp_sandbox.testing import running_kube


def _counts(url: str) -> dict[tuple[str, str, str], int]:
    rows = requests.get(f"{url}/_emulator/requests", timeout=10).json()["requests"]
    return {(r["verb"], r["resource"], r["client"]): r["count"] for r in rows}


def test_requests_are_counted_by_verb_resource_and_client() -> None:
    """Creates, patches of a subresource, reads and watches each land in their own bucket; DELETE zeroes them."""
    with running_kube() as kube:
        http = requests.Session()
        http.headers["User-Agent"] = "counting-test/1.0 (extra words)"
        secrets = f"{kube.url}/api/v1/namespaces/default/secrets"
        for name in ("a", "b"):
            body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": "v"}}
            assert http.post(secrets, json=body, timeout=10).status_code == 201
        assert http.get(f"{secrets}/a", timeout=10).status_code == 200
        assert http.get(secrets, timeout=10).status_code == 200
        patch = {"metadata": {"labels": {"x": "y"}}}
        headers = {"Content-Type": "application/merge-patch+json"}
        assert http.patch(f"{secrets}/a", json=patch, headers=headers, timeout=10).status_code == 200
        with http.get(secrets, params={"watch": "true", "timeoutSeconds": "1"}, timeout=10, stream=True) as watch:
            assert watch.status_code == 200
        namespace_status = f"{kube.url}/api/v1/namespaces/default/status"
        assert http.get(namespace_status, timeout=10).status_code == 200

        counts = _counts(kube.url)
        assert counts[("create", "secrets", "counting-test/1.0")] == 2
        assert counts[("get", "secrets", "counting-test/1.0")] == 2
        assert counts[("patch", "secrets", "counting-test/1.0")] == 1
        assert counts[("watch", "secrets", "counting-test/1.0")] == 1
        assert counts[("get", "namespaces/status", "counting-test/1.0")] == 1
        # The admin endpoint itself is not counted.
        assert not any(resource.startswith("_emulator") for _, resource, _ in counts)

        assert requests.delete(f"{kube.url}/_emulator/requests", timeout=10).status_code == 200
        assert _counts(kube.url) == {}
