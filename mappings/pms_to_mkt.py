"""PMS -> marketing: the black map is published (flow 3), so marketing may organise energization."""

from __future__ import annotations

from contracts.base import MappingContext
from contracts.mkt import BlackMapNotice
from contracts.pms import BlackMapPublished


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
