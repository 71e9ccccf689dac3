"""PMS -> marketing: the black map is published (flow 3), so marketing may organise energization."""

from __future__ import annotations

from gridbus.contracts.base import MappingContext
from gridbus.contracts.mkt import BlackMapNotice
from gridbus.contracts.pms import BlackMapPublished


def black_map_notice(message: BlackMapPublished, ctx: MappingContext) -> BlackMapNotice:
    return BlackMapNotice(
        application_no=message.application_no,
        graph_id=message.graph_id,
        graph_version=message.graph_version,
        published_at=message.published_at,
        substation=message.substation,
        feeder=message.feeder,
        equipment_count=len(message.equipment),
        may_energize=True,
        notified_at=ctx.now,
    )
