"""Master-data changes of both platforms, built for tests: PMS's as XML (UTF-8 or GBK), marketing's as JSON."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone

from lxml import etree

from gridbus.contracts.mkt.master_data import MktMasterDataChanged
from gridbus.contracts.pms.master_data import NAMESPACE, PmsMasterDataChanged

CHINA = timezone(timedelta(hours=8))
CHANGED_AT = datetime(2026, 12, 8, 9, 30, tzinfo=CHINA)
_serial = itertools.count(1)


def code(prefix: str) -> str:
    """A business code no other test uses."""
    return f"{prefix}-{datetime.now():%H%M%S}-{next(_serial):05d}"


def _document(object_type, business_code, *, operation, revision, use, ends, fields, order, changed_by):
    return {
        "object_type": object_type,
        "business_code": business_code,
        "operation": operation,
        "object_revision": revision,
        "changed_at": CHANGED_AT + timedelta(minutes=revision),
        "changed_by": changed_by,
        "change_order_no": order or f"YD20261208{next(_serial):05d}",
        "transformer_use": use,
        "relation": ends,
        "fields": fields if fields is not None else {"Name": "城东1号"},
    }


def pms_xml(object_type: str, business_code: str, *, operation="create", revision=1, use=None, ends=None,
            fields=None, order=None, changed_by="sc330106021", encoding="UTF-8") -> bytes:
    """A PMS change; ``fields`` maps a name to its new value or to an ``(old, new)`` pair."""
    d = _document(object_type, business_code, operation=operation, revision=revision, use=use, ends=ends,
                  fields=fields, order=order, changed_by=changed_by)
    root = etree.Element(f"{{{NAMESPACE}}}MasterDataChanged", nsmap={None: NAMESPACE})

    def add(parent, name, text=None):
        element = etree.SubElement(parent, f"{{{NAMESPACE}}}{name}")
        element.text = text
        return element

    for name, key in (("ObjectType", "object_type"), ("BusinessCode", "business_code"), ("Operation", "operation"),
                      ("ObjectRevision", "object_revision"), ("ChangedAt", "changed_at"), ("ChangedBy", "changed_by"),
                      ("ChangeOrderNo", "change_order_no")):
        value = d[key]
        add(root, name, value.isoformat() if isinstance(value, datetime) else str(value))
    if use:
        add(root, "TransformerUse", use)
    if ends:
        relation = add(root, "Relation")
        add(relation, "First", ends[0])
        add(relation, "Second", ends[1])
    listed = add(root, "Fields")
    for name, value in d["fields"].items():
        old, new = value if isinstance(value, tuple) else (None, value)
        field = add(listed, "Field")
        add(field, "Name", name)
        if old is not None:
            add(field, "Old", old)
        if new is not None:
            add(field, "New", new)
    return etree.tostring(root, encoding=encoding, xml_declaration=True)


def mkt_json(object_type: str, business_code: str, *, operation="create", revision=1, use=None, ends=None,
             fields=None, order=None, changed_by="kh330106017") -> bytes:
    d = _document(object_type, business_code, operation=operation, revision=revision, use=use, ends=ends,
                  fields=fields, order=order, changed_by=changed_by)
    document = {"schema_version": "1", **{k: v for k, v in d.items() if v is not None and k != "fields"}}
    document["changed_at"] = d["changed_at"].isoformat()
    if ends:
        document["relation"] = {"first": ends[0], "second": ends[1]}
    document["fields"] = []
    for name, value in d["fields"].items():
        old, new = value if isinstance(value, tuple) else (None, value)
        document["fields"].append({"name": name, **({"old": old} if old else {}), **({"new": new} if new else {})})
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def body(system: str, *args, **kwargs) -> bytes:
    return pms_xml(*args, **kwargs) if system == "pms" else mkt_json(*args, **kwargs)


def change(system: str, *args, **kwargs):
    """The decoded change, as the route's contract reads it."""
    contract = PmsMasterDataChanged if system == "pms" else MktMasterDataChanged
    return contract.decode(body(system, *args, **kwargs))
