"""EnergizationTimeSet: marketing sets (or changes) the intended energization time (意向接电时间).

Flow 2, mkt -> cmd. Sent again on every change; ``revision`` orders them, and the route's
supersession keeps a late older revision from overwriting a newer one.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AwareDatetime, Field

from gridbus.contracts.mkt.base import APPLICATION_NO, JsonInbound


class EnergizationTimeSet(JsonInbound):
    message_type: ClassVar[str] = "EnergizationTimeSet"

    application_no: Annotated[str, Field(pattern=APPLICATION_NO)]
    intended_energization_time: AwareDatetime
    revision: Annotated[int, Field(ge=1)]
    set_at: AwareDatetime
    set_by: Annotated[str, Field(pattern=r"^[0-9A-Za-z_.-]{1,32}$")]  # staff id of the customer manager
