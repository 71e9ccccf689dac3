"""Messages gridbus sends itself when a durable schedule falls due (``contracts.state.Schedule``).

They travel like any other message (JSON, ``schema_version`` "1", strict decoding), from the
internal source ``gridbus`` through the retry exchange into the route's work queue, so a due
schedule is retried, dead-lettered and traced like everything else.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import AwareDatetime

from gridbus.contracts.mkt.base import JsonInbound


class OwnershipDue(JsonInbound):
    """Ownership establishment of a retail user's binding falls due (agreement effective time
    minus 15 days): route ``gridbus.ownership-due``."""

    message_type: ClassVar[str] = "OwnershipDue"

    user_unit_id: str
    period_start: date
    agreement_no: str
    due_at: AwareDatetime
