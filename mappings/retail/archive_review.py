"""Review of a sales-company archive pushed by the trading center (flow 5, seed 000 §1).

An archive is accepted when it is complete, its unified social credit code is valid (GB 32100
with the GB 11714 organisation check) and an enterprise's (``91``, see
``identifiers.SALES_COMPANY_PREFIXES``), no other company holds that code, and its dates and
capital make sense. Every problem found is reported, each with the field it concerns, so the
trading center can correct everything in one go.

On acceptance the trading center's data wins: the archive replaces the one gridbus holds, and
when they differ marketing is told which fields changed (contract change required). An archive
that says the company is deregistered ends the binding of every retail user still bound to it
(relationship dissolution required, one per binding).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from gridbus.contracts.identifiers import sales_company_code_problems
from gridbus.contracts.tc import SalesCompanyArchivePushed
from gridbus.contracts.state import Cancel, Decision, Record, State
from gridbus.contracts.times import china_date
from gridbus.mappings.retail import (
    COMPANY,
    COMPANY_ARCHIVE,
    COMPANY_CODE,
    bindings,
    company_by_archive,
    company_by_code,
    reason,
)

#: Registered capital above this (in 10,000 yuan, i.e. 100 billion yuan) is a typing error.
MAX_CAPITAL_10K_YUAN = Decimal(10_000_000)

#: Text the trading center's forms use for "nothing given".
_PLACEHOLDERS = frozenset({"", "无", "-", "/", "N/A", "n/a"})

#: Field of the model -> element name in the archive, for every field an archive must have.
REQUIRED = {
    "name": "Name",
    "short_name": "ShortName",
    "nature": "Nature",
    "address": "Address",
    "registration_place": "RegistrationPlace",
    "registered_capital_10k_yuan": "RegisteredCapital",
    "shareholders": "Shareholders",
    "established_on": "EstablishedOn",
    "legal_representative": "LegalRepresentative",
    "effective_date": "EffectiveDate",
}


def field_problems(archive: SalesCompanyArchivePushed, today: date) -> list[dict[str, str]]:
    """Completeness, credit code, dates and capital: every problem, in field order."""
    problems = []
    for attribute, element in REQUIRED.items():
        if _missing(getattr(archive, attribute)):
            problems.append(reason("missing", element, f"{element} is required and was not given"))
    for problem in sales_company_code_problems(archive.credit_code):
        problems.append(reason(f"credit-code-{problem.code}", "CreditCode", problem.message))
    established, effective = archive.established_on, archive.effective_date
    if established is not None and established > today:
        problems.append(
            reason("date-in-future", "EstablishedOn", f"established on {established.isoformat()}, after today {today.isoformat()}")
        )
    if established is not None and effective is not None and effective < established:
        problems.append(
            reason(
                "date-order",
                "EffectiveDate",
                f"effective from {effective.isoformat()}, before the company was established on {established.isoformat()}",
            )
        )
    capital = archive.registered_capital_10k_yuan
    if capital is not None and capital <= 0:
        problems.append(reason("capital-not-positive", "RegisteredCapital", f"registered capital {capital} is not positive"))
    elif capital is not None and capital > MAX_CAPITAL_10K_YUAN:
        problems.append(
            reason(
                "capital-implausible",
                "RegisteredCapital",
                f"registered capital {capital} (10,000 yuan) exceeds {MAX_CAPITAL_10K_YUAN}: check the unit",
            )
        )
    return problems


def held_company(archive: SalesCompanyArchivePushed, state: State) -> Record | None:
    """The company this archive is of: the one its archive id was accepted for, else the one that
    holds its credit code (the same company re-archived, e.g. renamed, under a new archive id)."""
    return company_by_archive(state, archive.archive_id) or company_by_code(state, archive.credit_code)


def decide(archive: SalesCompanyArchivePushed, state: State, now: datetime) -> Decision:
    decision = Decision()
    code = archive.credit_code
    problems = field_problems(archive, china_date(now))
    code_valid = not any(p["field"] == "CreditCode" for p in problems)
    held = held_company(archive, state) if code_valid else None
    holder = company_by_code(state, code) if code_valid else None
    if held is not None and holder is not None and holder.key != held.key:
        problems.append(
            reason(
                "credit-code-claimed",
                "CreditCode",
                f"credit code {code} belongs to {holder.data['name']} (archive {holder.data['archive_id']}); "
                f"archive {archive.archive_id} is of {held.data['name']}",
            )
        )
    label = f"archive {archive.archive_id} revision {archive.archive_revision}"
    if problems:
        decision.result = {"decision": "rejected", "reasons": problems}
        decision.change([code], f"{label} rejected: {', '.join(p['code'] for p in problems)}")
        return decision

    company_id = held.key if held is not None else archive.archive_id
    fields = archive.fields_for_comparison()
    before: dict[str, Any] = held.data["fields"] if held is not None else {}
    changed = [
        {"field": name, "old_value": before.get(name), "new_value": value}
        for name, value in fields.items()
        if held is not None and before.get(name) != value
    ]
    previous_code = held.data["credit_code"] if held is not None and held.data["credit_code"] != code else None
    archive_ids = held.data["archive_ids"] if held is not None else []
    if archive.archive_id not in archive_ids:
        archive_ids = [*archive_ids, archive.archive_id]
        decision.put(COMPANY_ARCHIVE, archive.archive_id, {"company_id": company_id})
    if held is None or previous_code is not None:
        decision.put(COMPANY_CODE, code, {"company_id": company_id})
    if previous_code is not None:  # the old code names no company any more
        decision.put(COMPANY_CODE, previous_code, {"company_id": None, "corrected_to": code})
    decision.put(
        COMPANY,
        company_id,
        {
            "company_id": company_id,
            "credit_code": code,
            "archive_id": archive.archive_id,
            "archive_ids": archive_ids,
            "archive_revision": archive.archive_revision,
            "name": archive.name,
            "status": archive.status,
            "effective_date": archive.effective_date.isoformat() if archive.effective_date else None,
            "fields": fields,
        },
        ref=code,
    )
    deregistered = archive.status == "deregistered"
    result: dict[str, Any] = {
        "decision": "accepted",
        "reasons": [],
        "company_id": company_id,
        "previous_credit_code": previous_code,
        "company": "created" if held is None else ("changed" if changed else "unchanged"),
        "deregistered": deregistered,
        # The trading center wins; marketing changes its contract with a company that still trades.
        "contract_change": changed if changed and not deregistered else [],
        "dissolutions": [],
    }
    keys = [code] if previous_code is None else [code, previous_code]
    if held is None:
        decision.change(keys, f"{label} accepted: sales company {company_id} registered as {code} ({archive.status})")
    elif previous_code is not None:
        decision.change(keys, f"{label} accepted: credit code of sales company {company_id} corrected from "
                              f"{previous_code} to {code}; {', '.join(c['field'] for c in changed)} changed")
    elif changed:
        fields_changed = ", ".join(c["field"] for c in changed)
        decision.change(keys, f"{label} accepted and replaces the archive held: {fields_changed} changed")
    else:
        decision.change(keys, f"{label} accepted: same as the archive held")

    if deregistered:
        state.get(bindings.COMPANY_BINDINGS, company_id)  # a binding made meanwhile refuses this decision
        for record in bindings.holding(state.find(bindings.KIND, ref=company_id)):
            binding = dict(record.data)
            previous = binding["state"]
            binding["state"] = bindings.DISSOLUTION_REQUIRED
            binding["dissolved_by"] = archive.archive_id
            binding["dissolved_at"] = now.isoformat()
            # the relationship ends on the deregistration's effective date, or today if that has passed
            binding["dissolved_on"] = max(filter(None, (china_date(now), archive.effective_date))).isoformat()
            decision.put(bindings.KIND, record.key, binding, ref=company_id)
            decision.cancels.append(Cancel(bindings.OWNERSHIP_ROUTE, record.key))
            decision.change(
                bindings.trace_keys_of(binding),
                f"binding {record.key}: {previous} -> {bindings.DISSOLUTION_REQUIRED} "
                f"(sales company {code} deregistered, {label})",
            )
            result["dissolutions"].append(binding)
        result["trace_keys"] = [b["user_unit_id"] for b in result["dissolutions"]]
    decision.result = result
    return decision


def trace_keys(archive: SalesCompanyArchivePushed) -> tuple[str, ...]:
    return (archive.credit_code,)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() in _PLACEHOLDERS
    if isinstance(value, (tuple, list)):
        return len(value) == 0
    return False
