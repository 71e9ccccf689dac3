"""Canonical IEC 61968-100 events of the retail market's state changes, in CIM names where CIM
has them (README, "Canonical payloads: CIM and gridbus's own").

- ``ServiceSupplier`` (CIM: an organisation that supplies services, ``kind`` ``retailer``): a
  sales company, created / changed / closed (deregistered). Its ``mRID`` is gridbus's stable id of
  the company; the credit code is one of its ``Names``, with the ``NameType``
  ``unifiedSocialCreditCode``, so a corrected code is a change of the same supplier.
- ``CustomerAgreement`` (CIM): the binding of a retail user unit to a sales company for a contract
  period (the tripartite agreement), created / changed / closed. ``validityInterval`` is the
  contract period, ``ServiceSupplier`` and ``Customer`` refer to the parties by ``mRID``, each
  ``UsagePoint`` carries its metering category as data.

No personal data: no user name, no legal representative.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from gridbus.contracts.base import MappingContext
from gridbus.contracts.canonical import CanonicalEvent
from gridbus.contracts.tc import SalesCompanyArchivePushed
from gridbus.contracts.times import china_midnight
from gridbus.mappings.events import _event, _Payload, add_category
from gridbus.mappings.retail.bindings import AGREEMENT_REFUSED, AGREEMENT_REJECTED, DISSOLUTION_REQUIRED

_COMPANY_VERBS = {"created": "created", "changed": "changed"}
_CLOSED = frozenset({AGREEMENT_REFUSED, AGREEMENT_REJECTED, DISSOLUTION_REQUIRED})

#: The CIM ``NameType`` under which a sales company's unified social credit code is given.
CREDIT_CODE_NAME_TYPE = "unifiedSocialCreditCode"


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
    payload = _Payload("ServiceSupplier")
    root = payload.root
    payload.add(root, "mRID", decision["company_id"])
    payload.add(root, "name", archive.name)
    payload.add(root, "aliasName", archive.short_name)
    names = payload.add(root, "Names")
    payload.add(names, "name", archive.credit_code)
    payload.add(payload.add(names, "NameType"), "name", CREDIT_CODE_NAME_TYPE)
    payload.add(root, "kind", "retailer")
    # gridbus's own: the trading center's archive and its state
    payload.add(root, "archiveID", archive.archive_id)
    payload.add(root, "archiveRevision", archive.archive_revision)
    payload.add(root, "status", archive.status)
    payload.add(root, "effectiveDate", archive.effective_date)
    for change in decision.get("contract_change", ()):
        payload.add(root, "changedField", change["field"])
    return _event(verb, payload, ctx)


def binding(message, ctx: MappingContext) -> CanonicalEvent | None:
    """The binding the decision created or moved on; nothing for a repeat or a refused review."""
    data = ctx.decision.get("binding")
    if not data or "state" not in data:  # a refused review has no state
        return None
    return _agreement_event(data, ctx, created=ctx.decision["decision"] == "accepted")


def dissolved_binding(message, ctx: MappingContext) -> CanonicalEvent:
    return _agreement_event(ctx.item, ctx)


def _agreement_event(data: dict, ctx: MappingContext, created: bool = False) -> CanonicalEvent:
    state = data["state"]
    verb = "created" if created else "closed" if state in _CLOSED else "changed"
    payload = _Payload("CustomerAgreement")
    root = payload.root
    payload.add(root, "mRID", data["agreement_no"])
    status = payload.add(root, "status")
    payload.add(status, "value", state)
    # the contract period, first day 00:00 to the day after the last (China time), end exclusive
    validity = payload.add(root, "validityInterval")
    payload.add(validity, "start", china_midnight(date.fromisoformat(data["period_start"])))
    payload.add(validity, "end", china_midnight(date.fromisoformat(data["period_end"]) + timedelta(days=1)))
    payload.add(payload.add(root, "ServiceSupplier"), "mRID", data["company_id"])
    payload.add(payload.add(root, "Customer"), "mRID", data["customer_no"])
    # gridbus's own: the user unit, the times of the process
    payload.add(root, "userUnit", data["user_unit_id"])
    if data.get("effective_time"):  # stored as received: written in +08:00 like every time sent
        payload.add(root, "effectiveTime", datetime.fromisoformat(data["effective_time"]))
    if data.get("ownership_due_at"):
        payload.add(root, "ownershipDueAt", datetime.fromisoformat(data["ownership_due_at"]))
    for point in data["metering_points"]:
        usage = payload.add(root, "UsagePoint")
        payload.add(usage, "mRID", point["metering_point_id"])
        add_category(payload, usage, point["category"], ctx)
    return _event(verb, payload, ctx)
