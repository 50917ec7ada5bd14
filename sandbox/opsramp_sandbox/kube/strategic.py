"""Strategic merge patch for the built-in kinds the emulator serves: keyed list merges and the patch directives.

`kubectl apply` sends these to built-in kinds; a plain merge patch would replace a Deployment's `containers` with
the one changed field and store `$setElementOrder/...` keys as data. The merge keys are those of the Go types'
`patchStrategy:"merge"` / `patchMergeKey` tags, looked up by the field path (list indexes left out).
"""

from __future__ import annotations

import copy
from typing import Any

from .patching import PatchError

Path = tuple[str, ...]
PRIMITIVE = ""  # a merged list of scalars (set union), e.g. metadata.finalizers


class MergeKeyMissing(PatchError):
    """An item of a keyed list without its merge key; worded as kube-apiserver's Go code words it."""

    def __init__(self, item: dict[str, Any], key: str) -> None:
        shown = " ".join(f"{k}:{v}" for k, v in sorted(item.items()))
        super().__init__(f"map: map[{shown}] does not contain declared merge key: {key}")


# Field-path suffix → merge key. Lists not named here are atomic: the patch replaces them.
#
# metadata.finalizers merges as a set, as on a real apiserver (kubernetes/kubernetes#25550): a strategic patch
# with a shorter list removes nothing; removal takes `$deleteFromPrimitiveList/finalizers`, a merge patch or a
# JSON patch.
_MERGE_KEYS: dict[Path, str] = {
    ("metadata", "finalizers"): PRIMITIVE,
    ("metadata", "ownerReferences"): "uid",
    ("containers",): "name",
    ("initContainers",): "name",
    ("ephemeralContainers",): "name",
    ("volumes",): "name",
    ("imagePullSecrets",): "name",
    ("hostAliases",): "ip",
    ("topologySpreadConstraints",): "topologyKey",
    ("schedulingGates",): "name",
    ("resourceClaims",): "name",
    ("containers", "ports"): "containerPort",
    ("initContainers", "ports"): "containerPort",
    ("containers", "env"): "name",
    ("initContainers", "env"): "name",
    ("containers", "volumeMounts"): "mountPath",
    ("initContainers", "volumeMounts"): "mountPath",
    ("containers", "volumeDevices"): "devicePath",
    ("initContainers", "volumeDevices"): "devicePath",
    ("status", "conditions"): "type",
}
# Paths from the object's root (a suffix match would catch e.g. a NetworkPolicy's ingress ports).
_ROOT_MERGE_KEYS: dict[tuple[str, Path], str] = {
    ("Service", ("spec", "ports")): "port",
    ("ServiceAccount", ("secrets",)): "name",
}

_PATCH = "$patch"
_RETAIN = "$retainKeys"
_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def _merge_key(kind: str, path: Path) -> str | None:
    if (kind, path) in _ROOT_MERGE_KEYS:
        return _ROOT_MERGE_KEYS[(kind, path)]
    for size in (2, 1):
        if len(path) >= size and path[-size:] in _MERGE_KEYS:
            return _MERGE_KEYS[path[-size:]]
    return None


def strategic_merge_patch(original: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply a strategic merge patch to an object of a built-in kind (the original is not modified)."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    kind = str(original.get("kind", ""))
    merged = _merge_map(copy.deepcopy(original), patch, kind, ())
    if merged is None:
        raise PatchError("a strategic merge patch cannot delete the whole object")
    return merged


def _merge_map(original: Any, patch: dict[str, Any], kind: str, path: Path) -> dict[str, Any] | None:
    directive = patch.get(_PATCH)
    if directive == "delete":
        return None
    if directive == "replace":
        return _merge_map({}, {k: v for k, v in patch.items() if k != _PATCH}, kind, path)
    if directive not in (None, "merge"):
        raise PatchError(f"unknown patch directive {directive!r}")
    result: dict[str, Any] = dict(original) if isinstance(original, dict) else {}
    retain = patch.get(_RETAIN)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError(f"{_RETAIN} must be a list")
        # Keys the patch does not keep go, so e.g. a strategy switched to Recreate loses its rollingUpdate.
        result = {k: v for k, v in result.items() if k in retain}
    for key, values in patch.items():
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE) :]
            if isinstance(result.get(field), list) and isinstance(values, list):
                result[field] = [v for v in result[field] if v not in values]
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = (*path, key)
        if isinstance(value, dict):
            merged = _merge_map(result.get(key), value, kind, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, kind, sub)
        else:
            result[key] = copy.deepcopy(value)
    for key, order in patch.items():
        if key.startswith(_ORDER) and isinstance(order, list):
            field = key[len(_ORDER) :]
            if isinstance(result.get(field), list):
                before = original.get(field) if isinstance(original, dict) else None
                result[field] = _normalize_order(
                    result[field], order, before if isinstance(before, list) else [], _merge_key(kind, (*path, field))
                )
    return result


def _merge_list(original: Any, patch: list[Any], kind: str, path: Path) -> list[Any]:
    key = _merge_key(kind, path)
    current = list(original) if isinstance(original, list) else []
    if key is None:
        return [_clean(item, kind, path) for item in patch]
    if key == PRIMITIVE:
        union = current + [copy.deepcopy(v) for v in patch if v not in current]
        return _normalize_order(union, patch, current, None)
    before = list(current)
    if any(isinstance(item, dict) and item.get(_PATCH) == "replace" and len(item) == 1 for item in patch):
        return [_clean(item, kind, path) for item in patch if not (isinstance(item, dict) and _PATCH in item)]
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"list {'.'.join(path)} is merged by {key!r}: its items must be objects")
        if key not in item:
            raise MergeKeyMissing(item, key)
        index = next((i for i, o in enumerate(current) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get(_PATCH) == "delete":
            if index is not None:
                current.pop(index)
            continue
        merged = _merge_map(current[index] if index is not None else {}, item, kind, path)
        if merged is None:
            continue
        if index is None:
            current.append(merged)
        else:
            current[index] = merged
    kept = [item for item in patch if item.get(_PATCH) != "delete"]
    return _normalize_order(current, kept, before, key)


def _normalize_order(merged: list[Any], order: list[Any], server_order: list[Any], key: str | None) -> list[Any]:
    """The merged list in the apiserver's order (apimachinery's normalizeElementOrder and mergeSortedSlice): the
    items the patch (or `$setElementOrder`) names in its order, the server-only ones in their old order, the two
    interleaved by where they stood in the live object. So a new item lands where a real apiserver puts it
    (e.g. before the existing ones), not simply at the end."""

    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    live = [ident(o) for o in server_order]

    def position(ids: list[Any], item: Any) -> int:
        return ids.index(ident(item)) if ident(item) in ids else -1

    right = sorted((i for i in merged if ident(i) in wanted), key=lambda i: wanted.index(ident(i)))
    left = sorted(
        (i for i in merged if ident(i) not in wanted),
        key=lambda i: position(live, i) if position(live, i) >= 0 else len(live),
    )
    result: list[Any] = []
    while left or right:
        if not left:
            result.append(right.pop(0))
        elif not right:
            result.append(left.pop(0))
        else:
            before, after = position(live, left[0]), position(live, right[0])
            result.append(left.pop(0) if before >= 0 and after >= 0 and before < after else right.pop(0))
    return result


def _clean(value: Any, kind: str, path: Path) -> Any:
    """A patch value stored as it is, minus any directives it carries."""
    if isinstance(value, dict):
        merged = _merge_map({}, {k: v for k, v in value.items() if k != _PATCH}, kind, path)
        return merged if merged is not None else {}
    if isinstance(value, list):
        return [_clean(item, kind, path) for item in value]
    return copy.deepcopy(value)
