"""EnergizationCompletedNotice: what gridbus tells PMS when marketing reports 送电 done.

XML on AMQP (``pms.in`` / ``energization.completed``), namespace
``urn:gridbus:pms:energization-completed:1``, as ``energization_completed.v1.xsd`` describes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import ClassVar

from lxml import etree
from pydantic import BaseModel, ConfigDict

from gridbus.contracts.times import ChinaTime

NAMESPACE = "urn:gridbus:pms:energization-completed:1"
SCHEMA = Path(__file__).with_name("energization_completed.v1.xsd")


class EnergizationCompletedNotice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str] = "EnergizationCompleted"
    content_type: ClassVar[str] = "application/xml"

    message_id: str
    application_no: str
    project_no: str
    graph_id: str
    graph_version: int
    outage_plan_no: str | None = None
    energized_at: ChinaTime
    notified_at: ChinaTime

    def encode(self) -> bytes:
        """UTF-8 XML in the schema's element order; the optional OutagePlanNo only when known."""
        root = etree.Element(f"{{{NAMESPACE}}}EnergizationCompleted", nsmap={None: NAMESPACE})
        for name, value in (
            ("MessageID", self.message_id),
            ("ApplicationNo", self.application_no),
            ("ProjectNo", self.project_no),
            ("GraphId", self.graph_id),
            ("GraphVersion", self.graph_version),
            ("OutagePlanNo", self.outage_plan_no),
            ("EnergizedAt", self.energized_at),
            ("NotifiedAt", self.notified_at),
        ):
            if value is not None:
                etree.SubElement(root, f"{{{NAMESPACE}}}{name}").text = (
                    value.isoformat() if isinstance(value, datetime) else str(value)
                )
        return etree.tostring(root, encoding="utf-8", xml_declaration=True)
