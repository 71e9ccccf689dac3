"""EnergizationCompleted: marketing reports the joint energization done (送电完成), with the actual time.

Fig. 4 of seed 003, mkt -> cmd and pms: the command center closes the outage and the
application's works, PMS puts the new equipment in service. Example:
``contracts/examples/mkt.EnergizationCompleted.json``. Times: ISO 8601 with offset.

graph_id / graph_version: the black map the customer was energized on (its notice allowed it).
outage_plan_no: the maintenance outage it was done in, when one was needed.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AwareDatetime, Field

from gridbus.contracts.mkt.base import APPLICATION_NO, JsonInbound

Identifier = Annotated[str, Field(pattern=r"^[0-9A-Za-z_.:-]{1,64}$")]


class EnergizationCompleted(JsonInbound):
    message_type: ClassVar[str] = "EnergizationCompleted"

    application_no: Annotated[str, Field(pattern=APPLICATION_NO)]
    project_no: Identifier
    graph_id: Identifier
    graph_version: Annotated[int, Field(ge=1)]
    outage_plan_no: Identifier | None = None
    energized_at: AwareDatetime
    reported_at: AwareDatetime
    reported_by: Annotated[str, Field(pattern=r"^[0-9A-Za-z_.-]{1,32}$")]  # staff id of the customer manager
