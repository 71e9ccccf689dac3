"""A publish's properties and headers table encoded as ``amqp.Message._serialize_properties``
writes them, for the plain values gridbus publishes (text, octets, integers, floats).

Anything else raises ``Unusual`` (or one of ``ENCODING_ERRORS``): the caller then leaves the
publish to py-amqp, which writes it, or refuses it, its own way.
"""

from __future__ import annotations

import struct

import amqp

U16 = struct.Struct(">H").pack
U32 = struct.Struct(">I").pack
U64 = struct.Struct(">Q").pack
_LONG_STR_HEAD = struct.Struct(">cI").pack
_I32 = struct.Struct(">ci").pack
_F64 = struct.Struct(">cd").pack
BYTE = [bytes((n,)) for n in range(256)]
#: Properties a publish may carry besides application_headers, in the order py-amqp writes them.
_PROPERTIES = tuple(amqp.Message.PROPERTIES)
PROPERTY_NAMES = frozenset(name for name, _ in _PROPERTIES) - {"application_headers"}


class Unusual(Exception):
    """A value the fast encoding leaves to py-amqp."""


#: What encoding a value py-amqp would write differently (or refuse) can raise.
ENCODING_ERRORS = (Unusual, IndexError, struct.error, UnicodeError, TypeError, ValueError, OverflowError)


def short_str(value) -> bytes:
    if type(value) is not str:
        raise Unusual
    data = value.encode("utf-8", "surrogatepass")
    return BYTE[len(data)] + data  # IndexError (over 255 bytes) is py-amqp's to refuse


#: Property names present (in the caller's order) -> (property flags, [(name, kind)] in py-amqp's order).
_LAYOUTS: dict[tuple, tuple[bytes, tuple[tuple[str, str], ...]]] = {}


def property_layout(names: tuple) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """The property flags for ``names`` (and the headers table), and the fields in py-amqp's order."""
    layout = _LAYOUTS.get(names)
    if layout is None:
        present = {*names, "application_headers"}
        flags, fields = 0, []
        for position, (name, kind) in enumerate(_PROPERTIES):  # 14 properties: one 16-bit flag word
            if name in present:
                flags |= 1 << (15 - position)
                fields.append((name, kind))
        if len(_LAYOUTS) >= 256:
            _LAYOUTS.clear()
        layout = _LAYOUTS[names] = (U16(flags), tuple(fields))
    return layout


def encode_properties(props: dict, headers: dict) -> bytes:
    """Property flags and list as ``amqp.Message._serialize_properties`` writes them."""
    flags, fields = property_layout(tuple(props))
    parts = [flags]
    append = parts.append
    for name, kind in fields:
        if kind == "s":
            value = props[name]
            if type(value) is not str:
                raise Unusual
            data = value.encode("utf-8", "surrogatepass")
            append(BYTE[len(data)])
            append(data)
        elif kind == "F":
            if type(headers) is not dict:
                raise Unusual
            append(encode_table(headers))
        elif kind == "o":
            value = props[name]
            if type(value) is not int or not 0 <= value <= 255:
                raise Unusual
            append(BYTE[value])
        elif kind == "L":
            value = props[name]
            if type(value) is not int or not 0 <= value < 1 << 64:
                raise Unusual
            append(U64(value))
        else:
            raise Unusual
    return b"".join(parts)


#: Header names already encoded as short strings.
_KEYS: dict[str, bytes] = {}


def encode_table(table: dict) -> bytes:
    parts = []
    append = parts.append
    for key, value in table.items():
        encoded = _KEYS.get(key)
        if encoded is None:
            encoded = short_str(key)
            if len(_KEYS) >= 1024:
                _KEYS.clear()
            _KEYS[key] = encoded
        append(encoded)
        kind = type(value)
        if kind is str:
            data = value.encode("utf-8", "surrogatepass")
            append(_LONG_STR_HEAD(b"S", len(data)))
            append(data)
        elif kind is int and -2147483647 <= value <= 2147483647:
            append(_I32(b"I", value))
        elif kind is float:
            append(_F64(b"d", value))
        else:
            raise Unusual
    data = b"".join(parts)
    return U32(len(data)) + data


def header_value(value) -> bytes:
    """One value of a headers table, as ``encode_table`` writes it."""
    kind = type(value)
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
        return _LONG_STR_HEAD(b"S", len(data)) + data
    if kind is int and -2147483647 <= value <= 2147483647:
        return _I32(b"I", value)
    if kind is float:
        return _F64(b"d", value)
    raise Unusual


def property_field(kind: str, value) -> bytes:
    """One property as ``encode_properties`` writes it (not the headers table)."""
    if kind == "s":
        return short_str(value)
    if kind == "o" and type(value) is int and 0 <= value <= 255:
        return BYTE[value]
    if kind == "L" and type(value) is int and 0 <= value < 1 << 64:
        return U64(value)
    raise Unusual
