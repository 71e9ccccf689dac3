"""What every request gridbus makes to a SOAP peer shares (``contracts/cmd/soap.py``,
``contracts/tc/soap.py``): the WSDL operation, and a header of ``MessageID`` (stable across
retries: the peer applies it once), ``CorrelationID`` and ``SentAt``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class SoapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str]
    operation: ClassVar[str]

    message_id: str = Field(min_length=1)
    correlation_id: str
    sent_at: AwareDatetime

    def _header(self) -> dict[str, Any]:
        return {"MessageID": self.message_id, "CorrelationID": self.correlation_id, "SentAt": self.sent_at}
