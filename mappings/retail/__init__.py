"""Retail electricity market (flows 5-8): the review rules and the durable binding process,
decided on the store's state (``contracts.state``), and the outputs the routes' steps send."""

from __future__ import annotations

from gridbus.contracts.state import Record, State

#: Store kind of accepted sales companies, keyed by the company's stable id (the archive id
#: under which gridbus first accepted it), ref = its current credit code.
COMPANY = "sales-company"

#: Store kinds that name the company an archive id, or a credit code, is of (``company_id``; None
#: for a code since corrected away). Read by key, so two decisions that would give one code or one
#: archive id to two companies at once cannot both commit.
COMPANY_ARCHIVE = "sales-company-archive"
COMPANY_CODE = "sales-company-code"


def reason(code: str, field: str, message: str) -> dict[str, str]:
    """One review reason as fed back to the trading center: what, which field, in words."""
    return {"code": code, "field": field, "message": message}


def company_by_code(state: State, credit_code: str) -> Record | None:
    """The sales company that holds ``credit_code`` now (a corrected code moves with its company)."""
    return _indexed(state, state.get(COMPANY_CODE, credit_code))


def company_by_archive(state: State, archive_id: str) -> Record | None:
    """The sales company an archive id was accepted for, if any."""
    return _indexed(state, state.get(COMPANY_ARCHIVE, archive_id))


def _indexed(state: State, index: Record | None) -> Record | None:
    if index is None or index.data["company_id"] is None:
        return None
    return state.get(COMPANY, index.data["company_id"])
