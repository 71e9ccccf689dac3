"""The console in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) against the console served on a free port, the real RabbitMQ (replays land in the
route's work queue) and a SQLite store of the test's own.

``GRIDBUS_CONSOLE_SCREENSHOTS=DIR`` keeps the screenshots the tests take (the README's come from
here); they are always written to the test's temporary folder.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
from kombu import Connection

from gridbus.contracts import naming
from gridbus.routes.hv_install import BLACK_MAP_PUBLISHED
from gridbus.routes.model import Source
from gridbus.tools.console.app import ConsoleConfig, build_app
from gridbus.tools.console.server import ConsoleServer
from gridbus.tools.replay import EDITED_FROM
from gridbus.workers import headers as H
from gridbus.workers import topology
from gridbus.workers.store import Store
from gridbus.workers.store.dead_letters import NewLetter, letter_id
from tests.support.amqp import QueueReader, declare_routes

pytestmark = pytest.mark.broker

CHROMIUM = "/usr/bin/chromium"
EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "examples"
PASSWORDS = {"vera": "viewer-password-1", "otto": "operator-password-1", "ada": "admin-password-1"}
ROLES = {"vera": "viewer", "otto": "operator", "ada": "admin"}
DAY_S = 86_400.0

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser tests need playwright (pip install -e '.[test]')")


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def route(broker_url):
    """The black-map route under a name of its own (its real contract), declared on the broker."""
    suffix = uuid.uuid4().hex[:8]
    declared = dataclasses.replace(
        BLACK_MAP_PUBLISHED, name=f"pms.black-map-console-{suffix}",
        source=Source("pms", f"black-map-console-{suffix}.published"),
    )
    declare_routes(broker_url, [declared])
    yield declared
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for queue in topology.derive([declared]).queues:
            channel.queue_delete(queue.name)


@pytest.fixture
def console(tmp_path, broker_url, route):
    store = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    app = build_app(ConsoleConfig(store.url, broker_url, (route,), secret="s" * 40), store)
    for name, password in PASSWORDS.items():
        app.state.accounts.add(name, ROLES[name], password)
    with ConsoleServer(app) as server:
        server.store = store
        yield server
    store.close()


@pytest.fixture
def work_queue(broker_url, route) -> QueueReader:
    """What arrived in the route's work queue (taken off it, kept for assertions)."""
    return QueueReader(broker_url, naming.work_queue(route.name))


def archived(store: Store, route, count: int, *, at: float, body: bytes = b"<x/>", reason="schema: GraphVersion",
             error_type="contract-violation", keys=("HV2026110300017",), headers=None) -> list[int]:
    """``count`` letters of ``route`` in the archive, as the ingester would have put them."""
    letters = []
    for _ in range(count):
        message_id = str(uuid.uuid4())
        properties = {"message_id": message_id, "type": "BlackMapPublished", "content_type": "application/xml",
                      "delivery_mode": 2, "user_id": "pms"}
        hdrs = {H.ROUTE: route.name, H.ERROR_TYPE: error_type, H.ERROR_MESSAGE: reason, H.ATTEMPT: 1, **(headers or {})}
        queue = naming.dead_letter_queue(route.name)
        letters.append(NewLetter(
            letter_id(queue, properties, hdrs, body), route.name, queue, message_id, "BlackMapPublished", error_type,
            reason, at - 1, at, at, 1, tuple(keys), properties, hdrs, body,
        ))
    store.dead_letters.ingest(letters, at=at)
    return [s.seq for s in store.dead_letters.search(limit=10_000) if s.message_id in {x.message_id for x in letters}]


def log_in(browser, console, name: str):
    page = browser.new_context(viewport={"width": 1366, "height": 860}).new_page()
    page.goto(console.url + "/")
    assert "/login" in page.url  # every page needs a login
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(console.url + "/")
    assert page.inner_text("header .user") == name and page.inner_text("header .role") == ROLES[name]
    return page


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("GRIDBUS_CONSOLE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


def wait_for_text(page, selector: str, text: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in page.inner_text(selector):
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} never showed {text!r}: {page.inner_text(selector)!r}")
        time.sleep(0.2)
        page.reload()


# --- logins and roles ------------------------------------------------------------------------------


def test_each_role_logs_in_and_is_offered_only_what_it_may_do(browser, console, route):
    archived(console.store, route, 2, at=time.time() - 60)
    offered = {}
    for name in ("vera", "otto", "ada"):
        page = log_in(browser, console, name)
        page.goto(f"{console.url}/dead-letters/letters?route={route.name}")
        offered[name] = {
            "replay": page.locator("#replay").count(),
            "purge": page.locator("#purge-all").count(),
            "note": page.goto(console.url + "/dead-letters") and page.locator("form.note").count(),
        }
        page.context.close()
    assert offered == {
        "vera": {"replay": 0, "purge": 0, "note": 0},
        "otto": {"replay": 1, "purge": 0, "note": 1},
        "ada": {"replay": 1, "purge": 1, "note": 1},
    }


def test_a_wrong_password_is_refused(browser, console):
    page = browser.new_page()
    page.goto(console.url + "/login")
    page.fill("input[name=name]", "otto")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    assert "wrong password" in page.inner_text(".error")
    page.goto(console.url + "/audit")
    assert "/login" in page.url
    page.close()


def test_a_viewers_forged_replay_is_refused_and_nothing_is_sent(browser, console, route, work_queue):
    seqs = archived(console.store, route, 3, at=time.time() - 60)
    page = log_in(browser, console, "vera")
    token = page.get_attribute("header form input[name=csrf]", "value")  # the viewer's own, valid token
    form = {"csrf": token, "scope": "all", "rate": "0", "replay_id": str(uuid.uuid4()), "route": route.name}
    forged = page.request.post(console.url + "/dead-letters/replay", form=form, max_redirects=0)
    assert forged.status == 403 and "vera has the viewer role: this needs the operator role" in forged.text()
    purge = page.request.post(console.url + "/dead-letters/purge", form={**form, "confirm": "yes"}, max_redirects=0)
    assert purge.status == 403
    page.context.close()
    # an operator's POST without the session's CSRF token is refused too
    page = log_in(browser, console, "otto")
    no_token = page.request.post(console.url + "/dead-letters/replay", form={**form, "csrf": "x" * 43}, max_redirects=0)
    assert no_token.status == 403 and "CSRF" in no_token.text()
    page.context.close()
    assert work_queue.drain() == []
    assert console.store.replays.unfinished() == [] and console.store.audit.rows() == []
    assert {s.status for s in console.store.dead_letters.search() if s.seq in seqs} == {"unhandled"}


# --- the overview ----------------------------------------------------------------------------------


def test_the_overview_shows_the_counts_of_a_known_set(browser, console, route, broker_url, tmp_path):
    now = time.time()
    archived(console.store, route, 3, at=now - 600)  # in the last hour
    archived(console.store, route, 2, at=now - 5 * 3600)  # earlier today
    archived(console.store, route, 4, at=now - 3 * DAY_S)  # before the last day
    console.store.idempotency.record(outcomes=[(route.name, f"done-{i}", "delivered") for i in range(7)])
    console.store.journal.append([(now - 60, "HV1", "retry-scheduled", route.name, "r-1", "delivery-failed: x")])
    with Connection(broker_url) as conn:  # two letters waiting in the dead-letter queue for the ingester
        producer = conn.Producer()
        for _ in range(2):
            producer.publish(b"<x/>", exchange="", routing_key=naming.dead_letter_queue(route.name))
    page = log_in(browser, console, "vera")
    row = page.locator(f"#routes tr[data-route='{route.name}']")
    cells = {cls: row.locator(f"td.{cls}").inner_text() for cls in (
        "processed-hour", "failed-hour", "retried-hour", "dead-hour", "processed-day", "dead-day",
        "work-depth", "dead-letter-depth")}
    assert cells == {"processed-hour": "7", "failed-hour": "4", "retried-hour": "1", "dead-hour": "3",
                     "processed-day": "7", "dead-day": "5", "work-depth": "0", "dead-letter-depth": "2"}
    oldest = console.store.dead_letters.oldest_unhandled()[route.name]
    assert row.locator("td.oldest").inner_text() == time.strftime(
        "%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(oldest + 8 * 3600))
    assert page.locator("svg.chart").count() == 2
    screenshot(page, tmp_path, "console-overview")
    page.goto(console.url + "/dead-letters")
    [group] = page.locator("#groups tr.group").all()
    assert group.locator("td.count").inner_text() == "9"
    screenshot(page, tmp_path, "console-groups")
    page.goto(f"{console.url}/dead-letters?older_than_days=1")
    assert page.locator("#groups td.count").inner_text() == "4"
    page.context.close()


# --- replays -----------------------------------------------------------------------------------------


def test_a_group_replay_at_a_set_rate_delivers_every_letter_once_and_is_audited(browser, console, route, work_queue,
                                                                              tmp_path):
    seqs = archived(console.store, route, 20, at=time.time() - 120)
    expected = {console.store.dead_letters.get(s).message_id for s in seqs}
    page = log_in(browser, console, "otto")
    page.goto(console.url + "/dead-letters")
    page.click(f"#groups a:has-text('{route.name}')")
    assert page.inner_text("h1 small") == "20 match"
    page.fill("input[name=rate]", "10")
    page.check("input[name=scope][value=all]")
    started = time.monotonic()
    page.click("#replay")
    page.wait_for_url(re.compile(r".*/replays/[0-9a-f-]{36}$"))
    wait_for_text(page, "#state", "done")
    elapsed = time.monotonic() - started
    assert page.inner_text("#progress") == "20 of 20 sent"
    assert elapsed >= 1.9  # letter n leaves n/10 s after the first: 20 letters take at least 1.9 s
    arrived = work_queue.drain()
    ids = [m.properties["message_id"] for m in arrived]
    assert sorted(ids) == sorted(expected) and len(set(ids)) == 20  # every letter once
    assert {m.headers[H.REPLAYED_BY] for m in arrived} == {"otto"}
    assert {console.store.dead_letters.get(s).status for s in seqs} == {"replayed"}
    page.goto(console.url + "/audit")
    row = page.locator("#audit tr[data-action=replay]")
    assert row.count() == 1
    assert "of 20 dead letter(s) at 10/s" in row.inner_text() and "otto" in row.inner_text()
    screenshot(page, tmp_path, "console-audit")
    page.context.close()


def test_a_selection_replay_sends_only_the_ticked_letters(browser, console, route, work_queue):
    seqs = archived(console.store, route, 4, at=time.time() - 60)
    page = log_in(browser, console, "otto")
    page.goto(f"{console.url}/dead-letters/letters?route={route.name}")
    for seq in seqs[:2]:
        page.check(f"tr[data-seq='{seq}'] input[name=seq]")
    page.fill("input[name=rate]", "0")
    page.click("#replay")
    wait_for_text(page, "#state", "done")
    ids = sorted(m.properties["message_id"] for m in work_queue.drain())
    assert ids == sorted(console.store.dead_letters.get(s).message_id for s in seqs[:2])
    statuses = [console.store.dead_letters.get(s).status for s in seqs]
    assert statuses == ["replayed", "replayed", "unhandled", "unhandled"]
    page.context.close()


# --- edit and replay ---------------------------------------------------------------------------------


def test_an_edit_that_breaks_the_contract_is_refused_and_one_that_fixes_it_is_sent_under_a_new_id(
        browser, console, route, work_queue, tmp_path):
    good = (EXAMPLES / "pms.BlackMapPublished.gbk.xml").read_bytes()
    broken = good.replace(b"<GraphVersion>3</GraphVersion>", b"<GraphVersion>three</GraphVersion>")
    [seq] = archived(console.store, route, 1, at=time.time() - 60, body=broken,
                     reason="element GraphVersion: 'three' is not a valid value of 'xs:positiveInteger'")
    original_id = console.store.dead_letters.get(seq).message_id
    page = log_in(browser, console, "otto")
    page.goto(f"{console.url}/dead-letters/{seq}")
    assert "杭州110kV文一变" in page.inner_text("#body")  # GBK decoded as it declares, Chinese intact
    text = page.input_value("#edit textarea")
    page.fill("#edit textarea", text.replace("<GraphVersion>three</GraphVersion>", "<GraphVersion>-1</GraphVersion>"))
    page.click("#edit button")
    reason = page.inner_text("#edit-error")
    assert reason.startswith(f"not sent: the edited body of dead letter {seq} (message {original_id}) on route "
                             f"{route.name} does not meet the contract BlackMapPublished:")
    assert "GraphVersion" in reason and reason.endswith("nothing sent")
    assert work_queue.drain() == []  # nothing sent
    assert console.store.dead_letters.get(seq).status == "unhandled"
    page.fill("#edit textarea", text.replace("<GraphVersion>three</GraphVersion>", "<GraphVersion>4</GraphVersion>"))
    page.click("#edit button")
    new_id = page.inner_text("#edited-id")
    assert new_id != original_id
    [copy] = work_queue.drain()
    assert copy.properties["message_id"] == new_id
    assert copy.headers[EDITED_FROM] == original_id
    assert copy.body == good.replace(b"<GraphVersion>3</GraphVersion>", b"<GraphVersion>4</GraphVersion>")  # GBK kept
    route.contract.decode(copy.body)  # what was sent meets the contract
    assert console.store.dead_letters.get(seq).status == "replayed"
    page.goto(console.url + "/audit?action=edit-replay")
    row = page.locator("#audit tr[data-action=edit-replay]")
    assert new_id in row.inner_text() and original_id in row.inner_text()
    [audited] = console.store.audit.rows(action="edit-replay")
    assert "-  <GraphVersion>three</GraphVersion>" in audited.detail["diff"]
    assert "+  <GraphVersion>4</GraphVersion>" in audited.detail["diff"]
    assert audited.detail["before"] != audited.detail["after"]
    page.context.close()


# --- purge and restore -----------------------------------------------------------------------------


def test_purge_by_age_asks_first_and_restore_brings_the_letters_back(browser, console, route):
    now = time.time()
    old = archived(console.store, route, 3, at=now - 40 * DAY_S)
    recent = archived(console.store, route, 2, at=now - 3600)
    page = log_in(browser, console, "ada")
    page.goto(f"{console.url}/dead-letters/letters?route={route.name}&older_than_days=30")
    assert page.inner_text("h1 small") == "3 match"
    page.click("#purge-all")
    assert page.inner_text("h1") == "Purge 3 dead letter(s)?"
    assert {console.store.dead_letters.get(s).status for s in old} == {"unhandled"}  # asked, nothing done yet
    page.click("#confirm-purge")
    assert "purged 3 dead letter(s)" in page.inner_text("[role=status]")
    assert {console.store.dead_letters.get(s).status for s in old} == {"deleted"}
    assert {console.store.dead_letters.get(s).status for s in recent} == {"unhandled"}
    page.goto(f"{console.url}/dead-letters/letters?route={route.name}")
    assert page.inner_text("h1 small") == "2 match"
    page.goto(f"{console.url}/dead-letters/letters?route={route.name}&status=deleted")
    assert page.inner_text("h1 small") == "3 match"
    page.click("#restore-all")
    assert "restored 3 dead letter(s)" in page.inner_text("[role=status]")
    assert page.inner_text("h1 small") == "5 match"
    page.goto(console.url + "/audit")
    actions = [r.get_attribute("data-action") for r in page.locator("#audit tr.audit-row").all()]
    assert actions == ["restore", "purge"]
    assert "ada" in page.inner_text("#audit")
    page.context.close()


# --- untrusted content ---------------------------------------------------------------------------------


def test_a_body_with_terminal_escapes_and_a_script_is_shown_inert(browser, console, route, tmp_path):
    body = b"<x>\x1b[2J\x1b]0;owned\x07<script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'></x>"
    [seq] = archived(console.store, route, 1, at=time.time() - 60, body=body,
                     reason="bad <script>window.__pwned=3</script> \x1b[31mred\u202e", keys=("<b>HV</b>",),
                     headers={"x-note": "\x1b[1mbold\x9b<script>window.__pwned=4</script>"})
    page = log_in(browser, console, "ada")
    for path in (f"/dead-letters/{seq}", f"/dead-letters/letters?route={route.name}", "/dead-letters", "/audit"):
        page.goto(console.url + path)
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("document.scripts.length") == 0 and page.locator("img").count() == 0
        html = page.content()
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", html), path  # no control character passes
    page.goto(f"{console.url}/dead-letters/{seq}")
    shown = page.inner_text("#body")
    assert "\\x1b[2J" in shown and "\\x07" in shown and "<script>window.__pwned = 1</script>" in shown
    assert "\\x1b[31mred\\u202e" in page.inner_text("#reason") and "<script>" in page.inner_text("#reason")
    assert "\\x1b[1mbold\\x9b<script>" in page.inner_text("#headers")
    screenshot(page, tmp_path, "console-letter")
    page.context.close()
