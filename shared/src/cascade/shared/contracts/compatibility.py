"""Whether a new JSON Schema of an event type still describes the same major version.

A payload changes only by adding optional fields; anything else is a new major version
(a new type string, or for core banking a new topic). Consumers of the old version keep
reading every event of a compatible change: they ignore the new fields, and find every
field they read where it was, as it was. So, comparing the schema the code generates with
the committed one, a change breaks the version if it:
* removes a property, or changes whether one is required;
* adds a required property;
* changes anything about an existing property other than its title, description,
  examples or `deprecated` flag, or the order of its enum members or alternatives (its
  type, format, bounds, pattern, enum, default ...), however harmless it looks: a narrower
  bound refuses events the producer sent before, a wider one sends events a consumer's own
  validation may refuse.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

# Words for people, not for validators: changing them changes no event's validity
# (`deprecated` is the step before a field's removal in a new major version).
_DESCRIPTIVE = frozenset({"title", "description", "examples", "$comment", "deprecated"})
# Keywords whose lists are sets: the order of enum members or alternatives is no change.
_UNORDERED = frozenset({"enum", "anyOf", "oneOf", "type"})
# The schema's identity and its container of definitions, compared definition by definition.
_DOCUMENT = frozenset({"$id", "$schema", "$defs"})


def version_breaks(committed: dict[str, Any], generated: dict[str, Any]) -> list[str]:
    """Returns how `generated` breaks the version `committed` describes; [] if it does not."""
    breaks = _node_breaks(committed, generated, "")
    old_defs, new_defs = committed.get("$defs", {}), generated.get("$defs", {})
    for name in sorted(old_defs):
        if name not in new_defs:
            breaks.append(f"$defs/{name}: removed")
        else:
            breaks += _node_breaks(old_defs[name], new_defs[name], f"$defs/{name}")
    return breaks


def _node_breaks(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        # anyOf, oneOf ...: the same alternatives in the same order, each compared.
        pairs = enumerate(zip(old, new, strict=True))
        return [b for i, (o, n) in pairs for b in _node_breaks(o, n, f"{path}[{i}]")]
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [f"{path or 'the schema'}: changed"]
    breaks = _properties_breaks(old, new, path)
    rest_old, rest_new = _constraints(old), _constraints(new)
    for key in sorted(rest_old.keys() | rest_new.keys()):
        if key not in rest_new:
            breaks.append(f"{_at(path, key)}: removed")
        elif key not in rest_old:
            breaks.append(f"{_at(path, key)}: added")
        elif not (key in _UNORDERED and _same_members(rest_old[key], rest_new[key])):
            breaks += _node_breaks(rest_old[key], rest_new[key], _at(path, key))
    return breaks


def _same_members(old: Any, new: Any) -> bool:
    if not (isinstance(old, list) and isinstance(new, list)):
        return False
    canonical = partial(json.dumps, sort_keys=True)
    return sorted(map(canonical, old)) == sorted(map(canonical, new))


def _properties_breaks(old: dict[str, Any], new: dict[str, Any], path: str) -> list[str]:
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    breaks = []
    for name in sorted(old_props.keys() | new_props.keys()):
        where = _at(path, name)
        if name not in new_props:
            breaks.append(f"{where}: removed")
        elif name not in old_props:
            if name in new_required:
                breaks.append(f"{where}: added as required")
        else:
            if name in new_required and name not in old_required:
                breaks.append(f"{where}: now required")
            if name in old_required and name not in new_required:
                breaks.append(f"{where}: no longer required")
            breaks += _node_breaks(old_props[name], new_props[name], where)
    return breaks


def _constraints(node: dict[str, Any]) -> dict[str, Any]:
    """The keywords that decide validity, less those compared property by property."""
    skipped = _DESCRIPTIVE | _DOCUMENT | {"properties", "required"}
    return {key: value for key, value in node.items() if key not in skipped}


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
