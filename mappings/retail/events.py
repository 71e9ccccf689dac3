"""Canonical IEC 61968-100 events of the retail market's state changes.

``SalesCompany`` created / changed / closed (deregistered), and ``CustomerAgreement`` (the
binding of a retail user unit to a sales company for a contract period: the tripartite
agreement) created / changed / closed, its ``status`` the binding's state. No personal data:
no user name, no legal representative.
"""

from __future__ import annotations

from gridbus.contracts.base import MappingContext
from gridbus.contracts.canonical import CanonicalEvent
from gridbus.contracts.tc import SalesCompanyArchivePushed
from gridbus.mappings.events import _event, _Payload, add_category
from gridbus.mappings.retail.bindings import AGREEMENT_REFUSED, AGREEMENT_REQUESTED, DISSOLUTION_REQUIRED

_COMPANY_VERBS = {"created": "created", "changed": "changed"}
_CLOSED = frozenset({AGREEMENT_REFUSED, DISSOLUTION_REQUIRED})


def sales_company(archive: SalesCompanyArchivePushed, ctx: MappingContext) -> CanonicalEvent | None:
    decision = ctx.decision
    if decision["decision"] != "accepted":
        return None
    if decision["deregistered"]:
        verb = "closed"
    elif decision["company"] in _COMPANY_VERBS:
        verb = _COMPANY_VERBS[decision["company"]]
    else:
        return None  # the same archive again: nothing changed
    payload = _Payload("SalesCompany")
    root = payload.root
    payload.add(root, "mRID", archive.credit_code)
    payload.add(root, "archiveID", archive.archive_id)
    payload.add(root, "archiveRevision", archive.archive_revision)
    payload.add(root, "name", archive.name)
    payload.add(root, "shortName", archive.short_name)
    payload.add(root, "status", archive.status)
    payload.add(root, "effectiveDate", archive.effective_date)
    for change in decision.get("contract_change", ()):
        payload.add(root, "changedField", change["field"])
    return _event(verb, payload, ctx)


def binding(message, ctx: MappingContext) -> CanonicalEvent | None:
    """The binding the decision created or moved on; nothing for a repeat or a refused review."""
    data = ctx.decision.get("binding")
    return _agreement_event(data, ctx) if data and "state" in data else None  # a refused review has no state


def dissolved_binding(message, ctx: MappingContext) -> CanonicalEvent:
    return _agreement_event(ctx.item, ctx)


def _agreement_event(data: dict, ctx: MappingContext) -> CanonicalEvent:
    state = data["state"]
    verb = "created" if state == AGREEMENT_REQUESTED else "closed" if state in _CLOSED else "changed"
    payload = _Payload("CustomerAgreement")
    root = payload.root
    payload.add(root, "mRID", data["agreement_no"])
    payload.add(root, "userUnit", data["user_unit_id"])
    payload.add(root, "customerNo", data["customer_no"])
    payload.add(root, "salesCompany", data["credit_code"])
    payload.add(root, "periodStart", data["period_start"])
    payload.add(root, "periodEnd", data["period_end"])
    payload.add(root, "status", state)
    if data.get("effective_time"):
        payload.add(root, "effectiveTime", data["effective_time"])
    if data.get("ownership_due_at"):
        payload.add(root, "ownershipDueAt", data["ownership_due_at"])
    for point in data["metering_points"]:
        usage = payload.add(root, "UsagePoint")
        payload.add(usage, "mRID", point["metering_point_id"])
        add_category(payload, usage, point["category"], ctx)
    return _event(verb, payload, ctx)
