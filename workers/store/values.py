"""AMQP property and header values as JSON text, and back, without losing a type.

A dead letter is archived so that it can be replayed as it was: its headers hold bytes,
timestamps, decimals and nested tables that plain JSON would flatten. Each such value is written
as a one-key object whose key names its type (``{"$bytes": base64}``, ``{"$time": iso}``,
``{"$decimal": text}``); a table whose own keys could be mistaken for one is wrapped in
``{"$table": ...}``. Reading turns them back into the values py-amqp encodes again the same way.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

_TAGS = ("$bytes", "$time", "$decimal", "$table")


def dumps(value: Any) -> str:
    """``value`` (a properties or headers table) as JSON text, every type tagged."""
    return json.dumps(_tagged(value), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def loads(text: str) -> Any:
    """What ``dumps`` wrote, with its types back."""
    return _untagged(json.loads(text))


def _tagged(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return {"$time": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dict):
        table = {str(k): _tagged(v) for k, v in value.items()}
        return {"$table": table} if len(table) == 1 and next(iter(table)) in _TAGS else table
    if isinstance(value, (list, tuple)):
        return [_tagged(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # nothing py-amqp decodes lands here; kept readable rather than refused


def _untagged(value: Any) -> Any:
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, inner), = value.items()
        if tag == "$bytes":
            return base64.b64decode(inner)
        if tag == "$time":
            return datetime.fromisoformat(inner)
        if tag == "$decimal":
            return Decimal(inner)
        if tag == "$table":
            return {k: _untagged(v) for k, v in inner.items()}
    return {k: _untagged(v) for k, v in value.items()}
