"""Structured logs: one JSON line per message outcome, personal data masked.

Personal data (names, phone numbers, ID numbers) must never appear in clear. Two guards:
values under keys that name personal data are masked whole, and phone and ID-number
patterns are masked wherever they appear in any string (error reasons included).
"""

from __future__ import annotations

import logging
import re
import sys

import structlog

PERSONAL_KEYS = {
    "name", "customer_name", "customername", "contact_phone", "contactphone", "phone", "mobile",
    "id_number", "idnumber", "legal_representative", "legalrepresentative", "contact", "contact_name",
    "user_name", "username",
}

# Mainland mobile numbers, fixed lines with area code, 18-digit resident ID numbers.
_PATTERNS = [
    re.compile(r"(?<!\d)(\d{6})(\d{8})(\d{3}[\dXx])(?!\d)"),  # ID number: keep region, mask birth date
    re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)"),  # mobile
    re.compile(r"(?<!\d)(0\d{2,3}-?)(\d{3,4})(\d{4})(?!\d)"),  # fixed line
]


#: The password of a URL (``scheme://user:password@host``): as ``workers.amqp.mask_url``.
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s;]*):[^\s;]*@", re.IGNORECASE)


def mask_text(text: str) -> str:
    if "@" in text:
        text = _URL_PASSWORD.sub(r"\1:***@", text)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3)[-2:].rjust(len(m.group(3)), "*"), text)
    return text


def mask_value(key: str, value):
    if key.lower() in PERSONAL_KEYS and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(key, v) for v in value]
    return value


def _mask_processor(_logger, _name, event_dict):
    return {k: mask_value(k, v) for k, v in event_dict.items()}


def configure(log_format: str = "json", level: str = "INFO", stream=None) -> None:
    """Configure structlog once, at start-up."""
    renderer = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_processor,  # after the traceback is text: it is masked too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "gridbus"):
    return structlog.get_logger(name)
