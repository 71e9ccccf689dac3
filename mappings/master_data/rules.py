"""The master-data rules (seed 003 §2.2, Table 1), decided on durable state.

gridbus keeps a registry of business codes (kind ``business-code``, key = the code): which object
type holds the code, its system of record, the newest revision accepted, a transformer's use, a
relation's ends, the object's current field values (personal ones left out), and whether it was
deleted. The registry is shared by competing workers: every decision reads the records it judges
by, and the store's version check refuses a commit when one of them changed meanwhile (the
message is then decided again on the new state), so two workers can never both take one code
for two object types.

A change is judged in this order, and the first rule it breaks refuses it:

1. ``not-system-of-record``: the source is not the owner of the object type (Table 1);
2. ``write-not-permitted``: a public transformer (公变) is written by pms, a dedicated one (专变)
   by mkt, although both live on the grid-resource platform; ``use-change-not-permitted``: a
   transformer turns from public to dedicated, or back, only from pms;
3. ``business-code-conflict``: the code is held for another object type (one object, one code,
   across both platforms);
4. a change whose revision is older than the newest one held for the code is ``superseded``
   (the same revision again is a repeat: answered, not applied again);
5. a relation naming an end gridbus does not hold waits for it: ``AwaitingReference``, retried
   through the broker, dead-lettered ``unknown-reference`` once the route's retries are spent;
   an end held as another object type than the relation names (or a transformer of the other
   use, where the relation needs a public or a dedicated one) is ``reference-type-mismatch``.

A refused change writes nothing but the fact that it was decided: it is never applied or
forwarded, and the source is told why (``outputs.reply``). An accepted change about a metering
point also keeps the point's ``MeteringPointData`` (``contracts.metering_point``) for the
readings and retail flows.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from gridbus.contracts.errors import AwaitingReference
from gridbus.contracts.master_data import (
    OBJECT_TYPES,
    PERSONAL_FIELDS,
    TRANSFORMER_WRITER,
    VERB_OF,
    MasterDataChange,
)
from gridbus.contracts.metering_point import METERING_POINT, MeteringPointData
from gridbus.contracts.state import Decision, Record, State

#: Store kind of the business-code registry, keyed by business code.
REGISTRY = "business-code"

#: The fields of a metering-point change that make its ``MeteringPointData``.
CT_RATIO, PT_RATIO, CAPACITY = "CtRatio", "PtRatio", "ContractedCapacity"
CATEGORY, CUSTOMER = "CategoryCode", "Customer"

ACCEPTED, REFUSED, SUPERSEDED, REPEAT = "accepted", "refused", "superseded", "repeat"

_USE_ZH = {"public": "公变", "dedicated": "专变"}

#: Relations whose transformer end must be of one use: a 台区 (transformer area) is a public
#: transformer's, a dedicated transformer-customer relation a dedicated one's.
TRANSFORMER_END_USE = {"access-point-transformer-area": "public", "dedicated-transformer-customer": "dedicated"}


def decide(change: MasterDataChange, state: State, now: datetime) -> Decision:
    held = state.get(REGISTRY, change.business_code)
    refusal = _refusal(change, held)
    if refusal is not None:
        return _refused(change, *refusal)
    if held is not None and change.object_revision <= held.data["revision"]:
        return _not_newer(change, held)
    if change.relation is not None and change.operation != "delete":
        mismatch = _check_ends(change, state)
        if mismatch is not None:
            return _refused(change, "reference-type-mismatch", change.kind.owner, mismatch)
    return _accepted(change, held, now)


def _refused(change: MasterDataChange, error: str, owner: str, reason: str) -> Decision:
    """Nothing written but the journal line: the change is answered, never applied or forwarded."""
    decision = Decision(result=_result(change, REFUSED, owner, error=error, reason=reason))
    decision.change(change.trace_keys(), f"{_what(change)} from {change.system} refused: {error}: {reason}")
    return decision


def _not_newer(change: MasterDataChange, held: Record) -> Decision:
    """An older revision is superseded; the newest one again is a repeat. Neither is applied."""
    newest = held.data["revision"]
    if change.object_revision == newest:
        outcome, reason = REPEAT, f"revision {newest} is already held"
    else:
        outcome = SUPERSEDED
        reason = (
            f"revision {change.object_revision} is older than revision {newest} held for "
            f"{change.object_type} {change.business_code}"
        )
    decision = Decision(result=_result(change, outcome, change.kind.owner, reason=reason))
    decision.change(change.trace_keys(), f"{_what(change)} from {change.system}: {outcome} ({reason})")
    return decision


def _accepted(change: MasterDataChange, held: Record | None, now: datetime) -> Decision:
    kind, code = change.kind, change.business_code
    values = _values(change, held)
    decision = Decision(result=_result(change, ACCEPTED, kind.owner, verb=VERB_OF[change.operation]))
    decision.put(REGISTRY, code, {
        "object_type": kind.code,
        "owner": kind.owner,
        "revision": change.object_revision,
        "deleted": change.operation == "delete",
        "use": change.transformer_use,
        "ends": [change.relation.first, change.relation.second] if change.relation else None,
        "values": values,
        "changed_at": change.changed_at.isoformat(),
        "change_order_no": change.change_order_no,
        "decided_at": now.isoformat(),
    }, ref=kind.code)
    if kind.code == METERING_POINT and change.operation != "delete":
        decision.put(METERING_POINT, code, metering_point(values).to_data())
    what = f"{_what(change)} from {change.system}: accepted"
    if held is not None and held.data.get("use") not in (None, change.transformer_use):
        what += f" (use {held.data['use']} -> {change.transformer_use})"
    decision.change(change.trace_keys(), what)
    return decision


def _refusal(change: MasterDataChange, held: Record | None) -> tuple[str, str, str] | None:
    """``(error code, owning system, reason)`` of the first write rule the change breaks, or None."""
    kind, source, code = change.kind, change.system, change.business_code
    same_type = held is None or held.data["object_type"] == kind.code
    live = held if same_type and held is not None and not held.data["deleted"] else None
    if kind.code == "transformer":
        refusal = _transformer_refusal(change, live)
        if refusal is not None:
            return refusal
    elif source != kind.owner:
        return (
            "not-system-of-record", kind.owner,
            f"{source} is not the system of record for {kind.code} ({kind.name_zh}): {kind.owner} is "
            "(seed 003 Table 1)",
        )
    if not same_type:
        other = OBJECT_TYPES[held.data["object_type"]]
        return (
            "business-code-conflict", other.owner,
            f"business code {code} is held for a {other.code} ({other.name_zh}) of {other.owner}, not a "
            f"{kind.code}: one object, one business code across both platforms",
        )
    return None


def _transformer_refusal(change: MasterDataChange, live: Record | None):
    source, use = change.system, change.transformer_use
    held_use = live.data["use"] if live is not None else None
    owner = OBJECT_TYPES["transformer"].owner
    if held_use is not None and held_use != use:
        if source != owner:
            return (
                "use-change-not-permitted", owner,
                f"transformer {change.business_code} is held as {held_use}: turning it {use} is accepted only from "
                f"{owner}, not from {source}",
            )
        return None
    writer = TRANSFORMER_WRITER[use]
    if source != writer:
        return (
            "write-not-permitted", owner,
            f"transformer {change.business_code} is {use} ({_USE_ZH[use]}): a {use} transformer is written by "
            f"{writer}, not by {source}",
        )
    return None


def _check_ends(change: MasterDataChange, state: State) -> str | None:
    """None when both ends are held as the object types the relation names; the reason of a
    mismatch; ``AwaitingReference`` while an end is not held (or deleted)."""
    kind = change.kind
    ends = (change.relation.first, change.relation.second)
    held = state.get_many(REGISTRY, ends)
    missing = [end for end in ends if end not in held or held[end].data["deleted"]]
    if missing:
        raise AwaitingReference(
            f"{kind.code} relation {change.business_code} names {', '.join(missing)}, which gridbus does not "
            "hold yet; will retry"
        )
    for end, allowed, which in zip(ends, kind.ends, ("first", "second")):
        actual = held[end].data["object_type"]
        if actual not in allowed:
            return (
                f"the {which} end {end} of {kind.code} relation {change.business_code} is a {actual}, "
                f"not a {' or '.join(sorted(allowed))}"
            )
        use = TRANSFORMER_END_USE.get(kind.code)
        if actual == "transformer" and use is not None and held[end].data["use"] != use:
            return (
                f"the {which} end {end} of {kind.code} relation {change.business_code} is a "
                f"{held[end].data['use']} transformer, not a {use} one ({_USE_ZH[use]})"
            )
    return None


def _values(change: MasterDataChange, held: Record | None) -> dict[str, str]:
    """The object's field values after the change: those held, with the changed ones applied.
    Personal fields are not kept: gridbus forwards them, it has no use for them afterwards."""
    if change.operation == "delete":
        return {}
    values = dict(held.data["values"]) if held is not None and change.operation == "change" else {}
    for field in change.fields:
        if field.name in PERSONAL_FIELDS:
            continue
        if field.new is None:
            values.pop(field.name, None)
        else:
            values[field.name] = field.new
    return values


def metering_point(values: dict[str, str]) -> MeteringPointData:
    """What the readings and retail flows need of a metering point: multiplier = CT x PT (1 for a
    ratio not given, as for a directly connected meter; None when a ratio cannot be read)."""
    ct, pt = _decimal(values.get(CT_RATIO, "1")), _decimal(values.get(PT_RATIO, "1"))
    return MeteringPointData(
        multiplier=ct * pt if ct is not None and pt is not None else None,
        contracted_capacity_kva=_decimal(values.get(CAPACITY)),
        category_code=values.get(CATEGORY),
        customer=values.get(CUSTOMER),
    )


def _decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value > 0 else None


def _result(change: MasterDataChange, outcome: str, owner: str, **more: Any) -> dict[str, Any]:
    return {"decision": outcome, "owner": owner, "object_type": change.object_type, **more}


def _what(change: MasterDataChange) -> str:
    return (
        f"{change.operation} of {change.object_type} {change.business_code} revision {change.object_revision} "
        f"(change order {change.change_order_no})"
    )


def trace_keys(change: MasterDataChange) -> tuple[str, ...]:
    return change.trace_keys()
