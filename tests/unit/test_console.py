"""The console's rules that need nothing running: passwords, sessions, CSRF, roles, the trusted
header, what a filter selects, and that what a publisher wrote is printed inert. Requests go
through Starlette's test client to the real application on a SQLite store of the test's own."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from starlette.testclient import TestClient

from gridbus.routes import ROUTES
from gridbus.tools.console.accounts import AccountError, Accounts, hash_password, password_matches
from gridbus.tools.console.app import ConsoleConfig, build_app
from gridbus.tools.console.auth import Refused, TrustedHeader, local_path
from gridbus.tools.console.dead_letter_pages import selection_of
from gridbus.tools.console.rendering import Inert, Lines, environment, finalize
from gridbus.workers.runtime import CHINA_TZ
from gridbus.workers.store import Store

PASSWORD = "a-long-enough-password"


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    yield s
    s.close()


def make_app(store, **config):
    app = build_app(ConsoleConfig(store.url, "memory://", ROUTES, secret="k" * 40, **config), store)
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
        app.state.accounts.add(name, role, PASSWORD)
    return app


def csrf_of(response) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', response.text).group(1)


def logged_in(app, name: str) -> tuple[TestClient, str]:
    client = TestClient(app)
    token = csrf_of(client.get("/login"))
    answer = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": token, "next": "/"},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    return client, csrf_of(client.get("/"))


# --- passwords and accounts ------------------------------------------------------------------------


def test_a_password_hash_is_salted_and_checked_in_full():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert password_matches(PASSWORD, first) and password_matches(PASSWORD, second)
    assert not password_matches(PASSWORD + "x", first)
    assert not password_matches(PASSWORD, "plain") and not password_matches(PASSWORD, "md5$1$1$1$x$y")


def test_accounts_refuse_bad_names_roles_and_short_passwords(store):
    accounts = Accounts(store.db)
    for name, role, password, why in (
        ("a b", "viewer", PASSWORD, "user name"), ("\x1b[2J", "viewer", PASSWORD, "user name"),
        ("ok", "root", PASSWORD, "role"), ("ok", "viewer", "short", "12 characters"),
    ):
        with pytest.raises(AccountError, match=why):
            accounts.add(name, role, password)
    assert accounts.add("otto", "operator", PASSWORD) is True
    assert accounts.add("otto", "viewer", PASSWORD + "2") is False  # an update
    assert accounts.authenticate("otto", PASSWORD) is None
    assert accounts.authenticate("otto", PASSWORD + "2").role == "viewer"
    assert accounts.authenticate("nobody", PASSWORD) is None


# --- sessions, CSRF and roles -------------------------------------------------------------------------


def test_every_page_needs_a_login_and_every_change_a_session(store):
    client = TestClient(make_app(store))
    for path in ("/", "/dead-letters", "/dead-letters/letters", "/dead-letters/1", "/trace", "/audit", "/replays/x"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next="), path
    for path in ("/dead-letters/replay", "/dead-letters/purge", "/dead-letters/restore", "/dead-letters/note",
                 "/dead-letters/1/edit", "/replays/x/resume", "/logout"):
        assert client.post(path, data={"csrf": "x"}).status_code == 403, path


def test_a_login_needs_the_forms_csrf_token(store):
    client = TestClient(make_app(store))
    client.get("/login")
    answer = client.post("/login", data={"name": "ada", "password": PASSWORD, "csrf": "forged"})
    assert answer.status_code == 403 and "CSRF" in answer.text


def test_a_viewer_reads_but_every_post_is_refused(store):
    client, token = logged_in(make_app(store), "vera")
    assert client.get("/dead-letters").status_code == 200
    for path, form in (("/dead-letters/replay", {"scope": "all", "rate": "1"}), ("/dead-letters/note", {"note": "x"}),
                       ("/dead-letters/purge", {"scope": "all", "confirm": "yes"})):
        answer = client.post(path, data={"csrf": token, **form})
        assert answer.status_code == 403 and "vera has the viewer role" in answer.text
    assert store.audit.rows() == []


def test_an_operator_may_not_purge_and_a_role_change_counts_at_once(store):
    app = make_app(store)
    client, token = logged_in(app, "otto")
    answer = client.post("/dead-letters/purge", data={"csrf": token, "scope": "all", "confirm": "yes"})
    assert answer.status_code == 403 and "needs the admin role" in answer.text
    note = {"csrf": token, "route": "r", "error_type": "e", "message_type": "m", "note": "looking into it"}
    assert client.post("/dead-letters/note", data=note, follow_redirects=False).status_code == 303
    app.state.accounts.add("otto", "viewer", PASSWORD)
    assert client.post("/dead-letters/note", data=note).status_code == 403
    app.state.accounts.remove("otto")
    assert client.get("/", follow_redirects=False).status_code == 303  # the session ends with the account


def test_a_tampered_session_cookie_signs_nobody_in(store):
    client, _ = logged_in(make_app(store), "vera")
    cookie = client.cookies["gridbus_console"]
    client.cookies.clear()
    client.cookies.set("gridbus_console", cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB"))
    assert client.get("/", follow_redirects=False).status_code == 303


def test_logout_ends_the_session(store):
    client, token = logged_in(make_app(store), "ada")
    assert client.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_the_trusted_header_is_believed_only_from_the_proxy(store):
    trusted = make_app(store, trusted_header=TrustedHeader("x-forwarded-user", ("testclient",)))
    client = TestClient(trusted)
    assert "ada" in client.get("/", headers={"X-Forwarded-User": "ada"}).text
    assert client.get("/", headers={"X-Forwarded-User": "mallory"}, follow_redirects=False).status_code == 303
    elsewhere = make_app(store, trusted_header=TrustedHeader("x-forwarded-user", ("10.0.0.1",)))
    sso = {"X-Forwarded-User": "ada"}
    assert TestClient(elsewhere).get("/", headers=sso, follow_redirects=False).status_code == 303
    off = make_app(store)  # off by default
    assert TestClient(off).get("/", headers=sso, follow_redirects=False).status_code == 303


def test_a_login_goes_back_only_to_a_path_of_the_console():
    assert local_path("/dead-letters?route=x") == "/dead-letters?route=x"
    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example", "", None):
        assert local_path(elsewhere) == "/"


def test_every_answer_forbids_scripts_and_frames(store):
    answer = TestClient(make_app(store)).get("/login")
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"
    assert "<script" not in answer.text


# --- filters ------------------------------------------------------------------------------------------


def test_a_filter_reads_dates_in_china_time_and_age_in_days():
    now = 1_800_000_000.0
    s = selection_of({"since": "2026-12-01", "older_than_days": "30", "until": "2030-01-01", "route": "r"}, now)
    assert s.since == datetime(2026, 12, 1, tzinfo=CHINA_TZ).timestamp()
    assert s.until == now - 30 * 86_400 and s.route == "r" and s.status == "unhandled"
    for bad in ({"status": "gone"}, {"since": "yesterday"}, {"older_than_days": "many"}, {"older_than_days": "-1"}):
        with pytest.raises(Refused):
            selection_of(bad, now)


# --- what is printed -------------------------------------------------------------------------------------


def test_whatever_a_publisher_wrote_is_printed_inert():
    env = environment()
    template = env.from_string("<p>{{ v }}</p><pre>{{ body }}</pre><i>{{ done }}</i>")
    html = template.render(v="\x1b[2J<script>x</script>\u202e\x9b", body=Lines("a\n\tb\x1b]0;t\x07"),
                           done=Inert("\\x1b"))
    assert html == ("<p>\\x1b[2J&lt;script&gt;x&lt;/script&gt;\\u202e\\x9b</p><pre>a\n\tb\\x1b]0;t\\x07</pre>"
                    "<i>\\x1b</i>")
    assert finalize(None) == "" and finalize(3) == 3


def test_the_pages_render_with_an_empty_store(store):
    client, _ = logged_in(make_app(store), "ada")
    for path in ("/", "/dead-letters", "/dead-letters/letters?status=deleted", "/trace?key=RU1", "/audit?action=purge"):
        answer = client.get(path)
        assert answer.status_code == 200, path
    assert client.get("/dead-letters/999").status_code == 404
    assert client.get("/dead-letters?since=soon").status_code == 400


def test_a_replay_that_cannot_begin_is_refused_on_the_form(store):
    client, token = logged_in(make_app(store), "otto")
    form = {"csrf": token, "scope": "all", "rate": "5", "route": "(unrouted)",
            "replay_id": "3f1c9a52-8d0e-4c55-9a43-8d1c1f0f2a11"}
    answer = client.post("/dead-letters/replay", data=form)
    assert answer.status_code == 400 and "unrouted messages cannot be replayed" in answer.text
    assert store.replays.progress(form["replay_id"]) is None and store.audit.rows() == []
    too_fast = client.post("/dead-letters/replay", data={**form, "route": "", "rate": "1e9"})
    assert too_fast.status_code == 400 and "letters per second" in too_fast.text
