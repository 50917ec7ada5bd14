"""Label and field selectors with the apiserver's grammar (equality- and set-based)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Matcher = Callable[[dict[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)\s*$")
_KEY = re.compile(r"^([a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$")


class SelectorError(ValueError):
    """The selector text does not parse (the apiserver answers 400)."""


def _terms(text: str) -> list[str]:
    """Split on commas that are not inside a `( ... )` value set."""
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def _check_key(key: str) -> str:
    if not _KEY.match(key):
        raise SelectorError(f"invalid label key {key!r}")
    return key


def parse_label_selector(text: str | None) -> Matcher:
    """Compile a label selector into a predicate over an object."""
    # Each requirement is (operator, key, values); values only matter for =, !=, in and notin.
    requirements: list[tuple[str, str, frozenset[str]]] = []
    for term in _terms(text or ""):
        match = _SET_TERM.match(term)
        if match:
            values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append((match["op"], _check_key(match["key"]), values))
        elif "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            requirements.append(("notin", _check_key(key), frozenset({value})))
        elif "=" in term:
            key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            requirements.append(("in", _check_key(key), frozenset({value})))
        elif term.startswith("!"):
            requirements.append(("absent", _check_key(term[1:].strip()), frozenset()))
        else:
            requirements.append(("exists", _check_key(term), frozenset()))

    def matcher(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        for op, key, values in requirements:
            if op == "in" and labels.get(key) not in values:
                return False
            if op == "notin" and labels.get(key) in values:
                return False
            if op == "exists" and key not in labels:
                return False
            if op == "absent" and key in labels:
                return False
        return True

    return matcher


def _field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def parse_field_selector(text: str | None) -> Matcher:
    """Compile a field selector (`a.b=v`, `a.b==v`, `a.b!=v`) into a predicate over an object."""
    requirements: list[tuple[bool, str, str]] = []  # (equal?, path, value)
    for term in _terms(text or ""):
        if "!=" in term:
            path, value = (p.strip() for p in term.split("!=", 1))
            requirements.append((False, path, value))
        elif "=" in term:
            path, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            requirements.append((True, path, value))
        else:
            raise SelectorError(f"invalid field selector term {term!r}")

    def matcher(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, path) == value) == equal for equal, path, value in requirements)

    return matcher
