"""``PublishTemplate``: what many publishes share (exchange, routing key, the properties and
headers that stay the same) encoded once, so each publish encodes only the parts that vary."""

from __future__ import annotations

import struct

from gridbus.workers.amqp.encoding import (
    BYTE, ENCODING_ERRORS, PROPERTY_NAMES, U32, U64, Unusual, encode_table, header_value, property_field,
    property_layout, short_str,
)


class PublishTemplate:
    """What many publishes share, encoded once: exchange, routing key, mandatory flag, and the
    properties and headers that stay the same. ``encode(values, header_values)`` returns the
    property flags and list with the ``variable`` properties and ``variable_headers`` filled in
    (in the order named), the bytes ``encode_properties`` writes for the merged dicts; None for a
    value it leaves to the general path (``merged`` gives the dicts for it).

    ``properties`` and ``headers`` are whole examples: their key order is kept, the values of the
    variable ones are ignored.
    """

    __slots__ = ("exchange", "routing_key", "mandatory", "properties", "headers", "variable",
                 "variable_headers", "_plan", "_message_id")

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        *,
        properties: dict,
        headers: dict,
        variable: tuple[str, ...] = (),
        variable_headers: tuple[str, ...] = (),
        mandatory: bool = True,
    ):
        missing = [n for n in variable if n not in properties] + [n for n in variable_headers if n not in headers]
        if missing:
            raise ValueError(f"variable parts not in the example: {', '.join(missing)}")
        self.exchange, self.routing_key, self.mandatory = exchange, routing_key, mandatory
        self.properties = {k: v for k, v in properties.items() if v is not None or k in variable}
        self.properties.setdefault("delivery_mode", 2)
        self.headers = dict(headers)
        self.variable, self.variable_headers = tuple(variable), tuple(variable_headers)
        self._message_id = self.variable.index("message_id") if "message_id" in self.variable else None
        try:
            self._plan = self._compile()
        except ENCODING_ERRORS:
            self._plan = None  # every publish takes the general path

    def message_id(self, values: tuple) -> str | None:
        return values[self._message_id] if self._message_id is not None else self.properties.get("message_id")

    def merged(self, values: tuple, header_values: tuple) -> tuple[dict, dict]:
        properties = {**self.properties, **dict(zip(self.variable, values))}
        return properties, {**self.headers, **dict(zip(self.variable_headers, header_values))}

    def _compile(self) -> tuple | None:
        """Segments: constant bytes; ("s" | "o" | "L", index) for a variable property; and
        ("F", parts) for a headers table with variable values, parts being bytes or indexes."""
        if not PROPERTY_NAMES.issuperset(self.properties):
            return None
        flags, fields = property_layout(tuple(self.properties))
        plan: list = [flags]
        for name, kind in fields:
            if kind == "F":
                if not any(key in self.variable_headers for key in self.headers):
                    plan.append(encode_table(self.headers))
                    continue
                parts: list = []
                for key, value in self.headers.items():
                    parts.append(short_str(key))
                    parts.append(self.variable_headers.index(key) if key in self.variable_headers else header_value(value))
                plan.append(("F", tuple(_joined(parts))))
            elif name in self.variable:
                if kind not in ("s", "o", "L"):
                    return None
                plan.append((kind, self.variable.index(name)))
            else:
                plan.append(property_field(kind, self.properties[name]))
        return tuple(_joined(plan))

    def encode(self, values: tuple, header_values: tuple = ()) -> bytes | None:
        plan = self._plan
        if plan is None:
            return None
        out = []
        append = out.append
        try:
            for part in plan:
                if type(part) is bytes:
                    append(part)
                    continue
                kind = part[0]
                if kind == "s":
                    append(short_str(values[part[1]]))
                elif kind == "F":
                    table = [header_value(header_values[p]) if type(p) is int else p for p in part[1]]
                    data = b"".join(table)
                    append(U32(len(data)))
                    append(data)
                elif kind == "L":
                    value = values[part[1]]
                    if type(value) is not int or not 0 <= value < 1 << 64:
                        return None
                    append(U64(value))
                else:  # "o"
                    value = values[part[1]]
                    if type(value) is not int or not 0 <= value <= 255:
                        return None
                    append(BYTE[value])
        except (Unusual, IndexError, struct.error, UnicodeError):
            return None
        return b"".join(out)


def _joined(parts: list) -> list:
    """Adjacent bytes joined into one."""
    out: list = []
    for part in parts:
        if type(part) is bytes and out and type(out[-1]) is bytes:
            out[-1] += part
        else:
            out.append(part)
    return out
