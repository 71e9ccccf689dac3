"""At intake, a publisher's ``x-gridbus-*`` headers are dropped: only copies that came through
``gridbus.retry`` (writable by gridbus alone) carry gridbus's history."""

from __future__ import annotations

from gridbus.contracts import naming
from tests.support.routes import NOTES
from gridbus.workers import headers as H
from gridbus.workers.pipeline import Delivery


class _Message:
    def __init__(self, exchange: str):
        self.body = b"{}"
        self.properties = {"message_id": "m-1"}
        self.headers = {H.SOURCE_USER: "pms", H.ATTEMPT: 99, "custom": "c"}
        self.delivery_info = {"exchange": exchange, "routing_key": "note.published"}


def test_the_worker_reads_gridbus_headers_only_on_copies_from_the_retry_exchange():
    from_publisher = Delivery(NOTES, _Message("pms.out"))
    assert from_publisher.headers == {"custom": "c"} and from_publisher.source_user is None
    assert from_publisher.attempt == 1
    from_gridbus = Delivery(NOTES, _Message(naming.RETRY_EXCHANGE))
    assert from_gridbus.source_user == "pms" and from_gridbus.attempt == 99
