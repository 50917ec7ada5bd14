"""Where kopf keeps its own bookkeeping per resource: annotations, except for Observe resources (their status).

kopf remembers the last spec it handled (to see what changed) and each handler's retries. In annotations (the
operator's choice since its first release) that is a write to the resource's metadata; a resource with
`managementPolicy: Observe` must get no write beyond its status, so for those kopf keeps both in `status.kopf`.
Reads look in both places, so a resource switching between Manage and Observe keeps its history; each write also
clears the other place when it holds something, so only the current one stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.configs.diffbase import DiffBaseStorage
from kopf._cogs.configs.progress import ProgressRecord, ProgressStorage
from kopf._cogs.structs import bodies, dicts, ids, patches

from .constants import GROUP


def observing(body: Mapping[str, Any]) -> bool:
    spec = body.get("spec")
    return isinstance(spec, Mapping) and spec.get("managementPolicy") == "Observe"


class PolicyDiffBaseStorage(DiffBaseStorage):
    """The last handled spec: in an annotation for Manage resources, in status for Observe ones."""

    def __init__(self) -> None:
        super().__init__()
        self.annotations = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
        self.status = kopf.StatusDiffBaseStorage(name="kopf")

    def build(self, *, body: bodies.Body, extra_fields: Any = None) -> bodies.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        for storage in (self.annotations, self.status):
            essence = storage.build(body=bodies.Body(essence), extra_fields=extra_fields)
        return essence

    def fetch(self, *, body: bodies.Body) -> bodies.BodyEssence | None:
        first, second = (self.status, self.annotations) if observing(body) else (self.annotations, self.status)
        found = first.fetch(body=body)
        return found if found is not None else second.fetch(body=body)

    def store(self, *, body: bodies.Body, patch: patches.Patch, essence: bodies.BodyEssence) -> None:
        if observing(body):
            self.status.store(body=body, patch=patch, essence=essence)
            for key in self.annotations.make_keys(self.annotations.key, body=body):
                if key in body.metadata.annotations:
                    patch.metadata.annotations[key] = None
        else:
            self.annotations.store(body=body, patch=patch, essence=essence)
            if self.status.fetch(body=body) is not None:
                dicts.ensure(patch, self.status.field, None)


class PolicyProgressStorage(ProgressStorage):
    """Each handler's retries: in annotations for Manage resources, in status for Observe ones."""

    def __init__(self) -> None:
        super().__init__()
        self.annotations = kopf.AnnotationsProgressStorage(prefix=GROUP)
        self.status = kopf.StatusProgressStorage(name="kopf")

    def _pick(self, body: bodies.Body) -> ProgressStorage:
        return self.status if observing(body) else self.annotations

    def fetch(self, *, key: ids.HandlerId, body: bodies.Body) -> ProgressRecord | None:
        found = self._pick(body).fetch(key=key, body=body)
        if found is not None:
            return found
        other = self.annotations if observing(body) else self.status
        return other.fetch(key=key, body=body)

    def store(self, *, key: ids.HandlerId, record: ProgressRecord, body: bodies.Body, patch: patches.Patch) -> None:
        self._pick(body).store(key=key, record=record, body=body, patch=patch)

    def purge(self, *, key: ids.HandlerId, body: bodies.Body, patch: patches.Patch) -> None:
        # Each purges only what the body holds: nothing is written where nothing was kept.
        self.annotations.purge(key=key, body=body, patch=patch)
        self.status.purge(key=key, body=body, patch=patch)

    def touch(self, *, body: bodies.Body, patch: patches.Patch, value: str | None) -> None:
        self._pick(body).touch(body=body, patch=patch, value=value)

    def clear(self, *, essence: bodies.BodyEssence) -> bodies.BodyEssence:
        essence = self.annotations.clear(essence=essence)
        return self.status.clear(essence=essence)
