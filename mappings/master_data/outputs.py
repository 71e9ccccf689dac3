"""What the master-data routes send, from the change and the route's recorded decision.

- ``reply``: the 61968-100 ``ResponseMessage`` to the platform that sent the change, on its
  ``<system>.in``: OK for an accepted change (and for a repeat of one), FAILED with one FATAL
  ``Error`` for a refused or superseded one, the business code as ``ID`` with ``idAuthority`` =
  the system that owns it.
- ``data_platform``: an accepted change to the data middle platform (数据中台): a 61968-100
  message whose noun is the object type's (``contracts.master_data``), verb created, changed or
  deleted, with every changed field (personal data included: the data middle platform holds
  the customer archive).
- ``event``: the same as a canonical event for other adapters, without personal data: a personal
  field is named, never its values, and the staff id is left out.
"""

from __future__ import annotations

from gridbus.contracts.base import MappingContext
from gridbus.contracts.canonical import CanonicalEvent
from gridbus.contracts.canonical.reply import ObjectId, Reply, ReplyError, result_of
from gridbus.contracts.master_data import PERSONAL_FIELDS, MasterDataChange
from gridbus.mappings.events import _event, _Payload
from gridbus.mappings.master_data.rules import ACCEPTED, REFUSED, SUPERSEDED

#: Where each refusal points in the XML change (61968-100 ``xpath``).
_XPATH = {
    "not-system-of-record": "ObjectType",
    "write-not-permitted": "TransformerUse",
    "use-change-not-permitted": "TransformerUse",
    "business-code-conflict": "BusinessCode",
    "reference-type-mismatch": "Relation",
    "superseded": "ObjectRevision",
}


def reply(change: MasterDataChange, ctx: MappingContext) -> Reply:
    decision = ctx.decision
    errors: tuple[ReplyError, ...] = ()
    if decision["decision"] in (REFUSED, SUPERSEDED):
        code = decision.get("error") or SUPERSEDED
        errors = (
            ReplyError(
                code=code,
                level="FATAL",
                reason=f"{decision['reason']} (route {ctx.route}, message {ctx.source_message_id})",
                xpath=f"/MasterDataChanged/{_XPATH[code]}" if change.system == "pms" else None,
                id=ObjectId(change.business_code, id_type="BusinessCode", id_authority=decision["owner"]),
            ),
        )
    return Reply(
        noun=change.kind.noun,
        result=result_of(errors, 1),
        correlation_id=ctx.source_message_id,
        message_id=ctx.message_id,
        timestamp=ctx.now,
        errors=errors,
    )


def data_platform(change: MasterDataChange, ctx: MappingContext) -> CanonicalEvent | None:
    if ctx.decision["decision"] != ACCEPTED:
        return None
    return _event(ctx.decision["verb"], _payload(change, personal=True), ctx)


def event(change: MasterDataChange, ctx: MappingContext) -> CanonicalEvent | None:
    if ctx.decision["decision"] != ACCEPTED:
        return None
    return _event(ctx.decision["verb"], _payload(change, personal=False), ctx)


def _payload(change: MasterDataChange, *, personal: bool) -> _Payload:
    kind = change.kind
    payload = _Payload(kind.noun)
    root = payload.root
    payload.add(root, "mRID", change.business_code)
    payload.add(root, "objectType", kind.code)
    payload.add(root, "objectTypeName", kind.name_zh)
    payload.add(root, "systemOfRecord", kind.owner)
    payload.add(root, "revision", change.object_revision)
    payload.add(root, "changedAt", change.changed_at)
    if personal:
        payload.add(root, "changedBy", change.changed_by)
    payload.add(root, "changeOrderNo", change.change_order_no)
    if change.transformer_use is not None:
        payload.add(root, "use", change.transformer_use)
    if change.relation is not None:
        payload.add(root, "firstEnd", change.relation.first)
        payload.add(root, "secondEnd", change.relation.second)
    for field in change.fields:
        entry = payload.add(root, "Field")
        payload.add(entry, "name", field.name)
        if personal or field.name not in PERSONAL_FIELDS:
            for name, value in (("oldValue", field.old), ("newValue", field.new)):
                if value is not None:
                    payload.add(entry, name, value)
    return payload
