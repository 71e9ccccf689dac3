"""All configuration, read once at start-up from ``GRIDBUS_*`` environment variables."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gridbus.contracts.categories import CODES, DEFAULT_MARKET_CATEGORIES, MarketEligibility
from gridbus.contracts.rules import Rules
from gridbus.contracts.soap import peer_wsdl, soap_peer_wsdls
from gridbus.routes.model import SYSTEMS


#: The logging level names accepted by GRIDBUS_LOG_LEVEL (case does not matter).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: The SOAP peers' endpoints when GRIDBUS_SOAP_PEERS does not name them: the loopback stubs'.
DEFAULT_SOAP_PEERS = {"cmd": "http://127.0.0.1:8081/cmd", "tc": "http://127.0.0.1:8082/tc"}


class SettingsError(ValueError):
    """Settings that cannot be used, as one line naming each variable and what it accepts."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDBUS_", extra="ignore")

    broker_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672//",
        description="AMQP URL of RabbitMQ, or several separated by ';' (the nodes of a cluster, tried in turn), "
        "or memory:// for the embedded in-process broker.",
    )
    heartbeat_s: float = Field(
        30.0, description="AMQP heartbeat proposed to the broker, in seconds; a silent broker is dropped after two. 0: off."
    )
    amqp_fast_path: bool = Field(
        True,
        description="Read deliveries and write publishes below py-amqp's public API (buffered socket reads, "
        "publish frames encoded once per template): about twice the throughput. false: py-amqp's public API "
        "alone. Off by itself on a py-amqp minor version other than the one it is tested on.",
    )
    worker_name: str = Field("worker", description="Names the worker's connections: 'gridbus NAME@host pid N role'.")
    store_url: str = Field(
        "sqlite:///var/gridbus.sqlite3",
        description="Idempotency and state store: sqlite:///PATH for one process, "
        "postgresql://... when several workers share the work.",
    )
    store_retention_days: float = Field(
        3.0, description="How long processed message ids are kept, in days (see the README's Sizing the store)."
    )
    journal_retention_days: float = Field(
        400.0, gt=0, description="How long the trace journal keeps a line, in days; the worker removes older ones."
    )
    archive_ingest: bool = Field(
        True, description="The worker takes the routes' dead-letter queues into the store's archive (a thread and "
        "connection of its own). false: run `gridbus dlq ingest` somewhere instead."
    )
    archive_retention_days: float = Field(
        90.0, gt=0, description="Dead letters dead-lettered longer ago than this, in days, are purged from the archive "
        "by the worker (restorable for archive_restore_days, then removed)."
    )
    archive_restore_days: float = Field(
        14.0, ge=0, description="How long a purged dead letter can be restored, in days, before the worker removes it."
    )
    prefetch: int = Field(200, ge=1, description="Messages a worker takes from a queue before acking (per consumer).")
    batch_size: int = Field(100, ge=1, description="Messages processed between two confirm waits / store commits.")
    batch_linger_ms: float = Field(
        5.0, ge=0, description="A batch is closed at the latest this many milliseconds after its first message, full or not."
    )
    confirm_timeout_s: float = Field(30.0, gt=0, description="Longest wait for the broker's publisher confirms, in seconds.")
    message_deadline_s: float = Field(
        300.0,
        description="A batch that makes no progress for this many seconds (no synchronous call ends) is taken as a "
        "hang: the worker exits. Per lane; must be longer than soap_timeout_s for a lane that calls a SOAP peer.",
    )
    lanes: bool = Field(
        True,
        description="Consume in lanes: one per set of synchronous peers the routes' steps call, each its own "
        "consumer in a thread of its own, so a slow or failing peer holds only its own routes' messages.",
    )
    lane_consumers: int = Field(
        1, ge=1, le=16,
        description="Consumers per lane, each a thread with its own connections and batches, competing for the "
        "lane's queues as separate workers would: while one waits for PostgreSQL, the broker or a peer, another "
        "decodes and decides (the GIL is free during those waits, and while lxml parses and validates).",
    )
    breaker_failures: int = Field(
        5, ge=1, description="Transient failures in a row that open a synchronous peer's circuit breaker."
    )
    breaker_cooldown_s: float = Field(
        30.0, gt=0, description="How long an open breaker sends its peer's messages to their broker-held retry "
        "without a call, in seconds, before one probe call is let through.",
    )
    source_users: dict[str, str] = Field(
        default_factory=dict,
        description='RabbitMQ user that publishes for each source system, as JSON {"pms": "prod-pms"}; '
        "a system not named publishes as the user named by its code.",
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535,
        description="Port of the worker's /metrics, /healthz and /readyz (one small HTTP thread); unset: none served.",
    )
    metrics_host: str = Field(
        "0.0.0.0", description="Address that port listens on: 0.0.0.0 every interface, 127.0.0.1 this host only."
    )
    alert_webhook_url: str | None = Field(
        None,
        description="http(s) URL that gets one JSON POST per new dead-letter group (route, error type, message type) "
        "and at most one per group every alert_interval_min; unset: no webhook.",
    )
    alert_interval_min: float = Field(
        15.0, gt=0, description="Least time between two webhook notifications of one dead-letter group, in minutes."
    )
    log_format: Literal["json", "console"] = Field("json", description="json (production) or console (people).")
    log_level: str = Field("INFO", description="Python logging level name: DEBUG, INFO, WARNING, ERROR or CRITICAL.")

    soap_peers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_SOAP_PEERS),
        description='SOAP endpoint URL of each peer, as cmd=URL,tc=URL or JSON {"cmd": "URL"}; merged over the '
        "defaults (DEFAULT_SOAP_PEERS): a peer not named keeps its URL. Each peer's WSDL is in contracts/<peer>/.",
    )
    readings_tc_chunk_size: int = Field(
        500, ge=1, le=5000,
        description="Daily frozen readings per ReceiveMeterReadings call to the trading center (flow 9); each chunk "
        "has its own stable MessageID. Change it only with no readings part in flight: a part retried after "
        "the change is chunked anew.",
    )
    soap_timeout_s: float = Field(10.0, gt=0, description="Timeout of one SOAP operation, in seconds (always set).")
    soap_username: str | None = Field(None, description="WS-Security UsernameToken user; no token when unset.")
    soap_password: str | None = Field(None, description="WS-Security UsernameToken password.")
    console_host: str = Field("127.0.0.1", description="Address the dead-letter console listens on.")
    console_port: int = Field(8090, ge=0, le=65535, description="Port of the dead-letter console (0: any free port).")
    console_secret: str | None = Field(
        None,
        min_length=32,
        description="Key that signs the console's session cookies (at least 32 characters); unset: a random key "
        "per process, so sessions end when the console restarts.",
    )
    console_session_hours: float = Field(8.0, gt=0, description="How long a console login lasts, in hours.")
    console_trusted_header: str | None = Field(
        None,
        description="Request header naming the signed-in user, set by a reverse proxy doing single sign-on "
        "(e.g. X-Forwarded-User); unset: off, every user logs in with a password.",
    )
    console_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        ("127.0.0.1", "::1"),
        description="Client addresses whose trusted header is believed, comma-separated.",
    )

    @field_validator("log_level")
    @classmethod
    def _a_logging_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"one of {', '.join(LOG_LEVELS)} is accepted")
        return level

    market_categories: Annotated[frozenset[str], NoDecode] = Field(
        DEFAULT_MARKET_CATEGORIES,
        description="Metering-point categories (contracts/categories.py codes) that may join the retail market, "
        "separated by commas: a provincial rule.",
    )

    @field_validator("market_categories", mode="before")
    @classmethod
    def _known_categories(cls, value: Any) -> frozenset[str]:
        codes = frozenset(c.strip() for c in value.split(",") if c.strip()) if isinstance(value, str) else frozenset(value)
        unknown = sorted(codes - set(CODES))
        if unknown:
            raise ValueError(f"unknown metering categories {', '.join(unknown)}; known: {', '.join(CODES)}")
        return codes

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _blank_is_off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("alert_webhook_url")
    @classmethod
    def _a_webhook_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _an_http_url(value):
            raise ValueError("an http:// or https:// URL with a host is accepted")
        return value

    @field_validator("source_users")
    @classmethod
    def _one_user_per_system(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SYSTEMS))
        if unknown:
            raise ValueError(f"unknown source system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
        for system, user in value.items():
            if not user or len(user) > 255 or any(c.isspace() or not c.isprintable() for c in user):
                raise ValueError(f"user of {system!r} must be 1-255 printable characters without spaces")
        users = {s: value.get(s, s) for s in SYSTEMS}
        shared = sorted({u for u in users.values() if list(users.values()).count(u) > 1})
        if shared:
            raise ValueError(f"user(s) {', '.join(shared)} would publish for more than one system: give each its own")
        return value

    @field_validator("console_trusted_header")
    @classmethod
    def _a_header_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
            raise ValueError("a header name is letters, digits and '-' (at most 64)")
        return value

    @field_validator("console_trusted_proxies", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(a.strip() for a in value.split(",") if a.strip())
        return value

    @field_validator("soap_peers", mode="before")
    @classmethod
    def _an_endpoint_per_peer(cls, value: Any) -> dict[str, str]:
        peers = parse_peer_urls(value) if isinstance(value, str) else value
        if not isinstance(peers, dict) or not all(isinstance(p, str) and isinstance(u, str) for p, u in peers.items()):
            raise ValueError('peer=URL pairs separated by commas, or a JSON object {"cmd": "http://..."}, are accepted')
        for peer, url in peers.items():
            try:
                peer_wsdl(peer)  # a lowercase name, and a WSDL to call the peer with
            except ValueError as exc:
                raise ValueError(f"{exc}; the peers with a WSDL are {', '.join(soap_peer_wsdls())}") from None
            if not _an_http_url(url):
                raise ValueError(f"the URL of peer {peer!r} must be http:// or https:// with a host, not {url!r}")
        return {**DEFAULT_SOAP_PEERS, **peers}

    def rules(self) -> Rules:
        """The business rules the mappings are handed (``contracts.rules``)."""
        return Rules(market=MarketEligibility(self.market_categories))

    def mapping_options(self) -> dict[str, Any]:
        """What mappings may read of the settings (``MappingContext.options``), by option name."""
        return {"readings_tc_chunk_size": self.readings_tc_chunk_size}

    def source_user_names(self) -> dict[str, str]:
        """system code -> the RabbitMQ user that publishes for it (``source_users``, else the code)."""
        return {system: self.source_users.get(system, system) for system in SYSTEMS}


def parse_peer_urls(text: str) -> Any:
    """``cmd=http://a/cmd, tc=http://b/tc`` or JSON ``{"cmd": "http://a/cmd"}`` (for a URL that
    holds a comma); blank names no peer. What JSON holds is checked by the caller."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON object: {exc.msg} at character {exc.pos}") from None
    peers: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        peer, sep, url = (part.strip() for part in pair.partition("="))
        if not sep:
            raise ValueError(f"{pair!r} is not peer=URL")
        if peer in peers:
            raise ValueError(f"peer {peer!r} is named twice")
        peers[peer] = url
    return peers


def _an_http_url(url: str) -> bool:
    if any(c.isspace() or not c.isprintable() for c in url):
        return False
    try:
        parts = urlsplit(url)
        has_host = bool(parts.hostname) and parts.port != 0  # .port raises on a port out of range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and has_host


def load_settings(**overrides) -> Settings:
    """The settings, from ``GRIDBUS_*`` and ``overrides``; ``SettingsError`` in one line otherwise."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """``GRIDBUS_BATCH_SIZE=-5: Input should be greater than or equal to 1; ...``: one line."""
    problems = []
    for error in exc.errors():
        name = "GRIDBUS_" + "_".join(str(part) for part in error["loc"][:1]).upper()
        value = error.get("input")
        shown = value if isinstance(value, str) else repr(value)
        shown = "".join(c if c.isprintable() else "?" for c in shown)
        shown = shown if len(shown) <= 80 else shown[:80] + "..."
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}={shown}: {message}")
    return "invalid settings: " + "; ".join(problems)
