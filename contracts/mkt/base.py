"""What every marketing JSON contract shares: strict models, strict decoding, compact encoding.

Inbound JSON must be UTF-8, one object, no duplicate keys, no NaN/Infinity, carry
``"schema_version": "1"``, and match the model exactly (no extra fields, no type coercion,
datetimes in ISO 8601 with offset).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from gridbus.contracts.xml import describe_validation_error
from gridbus.contracts.errors import ContractViolation, quote

SCHEMA_VERSION = "1"

#: Application numbers (业务申请编号) as marketing issues them, e.g. ``HV2026110300017``.
APPLICATION_NO = r"^[A-Z]{1,4}[0-9]{8,20}$"


# Characters XML 1.0 forbids: the plan travels on to SOAP and XML peers, so refuse them at the door.
_NOT_XML_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(value: str) -> str:
    if _NOT_XML_CHARACTERS.search(value):
        raise ValueError("contains control characters that XML and SOAP peers cannot carry")
    return value


#: Free text that is carried on to other systems: 1-200 characters, none of them forbidden in XML.
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(xml_safe)]


class StrictModel(BaseModel):
    """Immutable, no unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class JsonInbound(StrictModel):
    """Base of JSON messages gridbus consumes from marketing."""

    message_type: ClassVar[str]
    schema_version: Literal["1"]

    @classmethod
    def decode(cls, body: bytes) -> Self:
        document = _load_object(body, contract=cls.__name__)
        if "schema_version" not in document:
            raise ContractViolation(f"{cls.__name__}: field schema_version is missing (expected \"1\")")
        version = document["schema_version"]
        if version != SCHEMA_VERSION:
            raise ContractViolation(
                f"{cls.__name__}: schema_version {quote(version)} is not supported; this contract is version \"1\""
            )
        try:
            return cls.model_validate_json(body, strict=True)
        except ValidationError as exc:
            raise ContractViolation(f"{cls.__name__}: {describe_validation_error(exc)}") from None


class JsonOutbound(StrictModel):
    """Base of JSON messages gridbus sends to marketing."""

    message_type: ClassVar[str]
    content_type: ClassVar[str] = "application/json"
    schema_version: Literal["1"] = SCHEMA_VERSION

    def encode(self) -> bytes:
        """UTF-8 JSON, Chinese text as is (not \\u-escaped), datetimes in ISO 8601 with offset.

        pydantic writes exactly what ``json.dumps(model_dump(mode="json"), ensure_ascii=False,
        separators=(",", ":"))`` writes, faster; that remains the way for anything pydantic's
        serialiser refuses (e.g. a lone surrogate, which then fails as it always did).
        """
        try:
            return self.__pydantic_serializer__.to_json(self)
        except Exception:
            return self._encode_with_json()

    def _encode_with_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _load_object(body: bytes, *, contract: str) -> dict[str, Any]:
    try:
        text = body.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise ContractViolation(
            f"{contract}: JSON must be UTF-8, but byte {exc.start} is not valid UTF-8"
        ) from None
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicate_keys, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ContractViolation(f"{contract}: malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # raised by the hooks below
        raise ContractViolation(f"{contract}: {exc}") from None
    except RecursionError:
        raise ContractViolation(f"{contract}: JSON nested too deeply") from None
    if not isinstance(document, dict):
        raise ContractViolation(f"{contract}: JSON must be an object, got {type(document).__name__}")
    return document


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {quote(key)} in JSON object")
        document[key] = value
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
