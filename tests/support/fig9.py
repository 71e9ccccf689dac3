"""The twenty sales-company archive rows of seed 000's Fig. 9, as test data."""

# How the table is read: Fig. 9 is a screenshot; its text layer names ten columns after 序号
# (企业名称, 企业简称, 统一社会信用代码, 企业性质, 企业地址, 注册地, 注册资本, 股东, 成立日期,
# 法人代表) but every row carries twelve values. Read in order, they are:
#   name, short_name, credit_code,
#   parent_company        (e.g. 国电晋能售电有限公司: a column the header does not name),
#   legal_representative  (无 in every row: none given),
#   nature, address, registration_place,
#   registered_capital_10k_yuan (注册资本, in 10,000 yuan), shareholders (e.g. 国电),
#   established_on        (成立日期),
#   effective_date        (the archive's effective date: a column the header does not name).
# The values are kept exactly as printed (tests/data/fig9_sales_companies.tsv), including the
# credit codes, none of which is a valid unified social credit code.

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path

from lxml import etree

TSV = Path(__file__).parents[1] / "data" / "fig9_sales_companies.tsv"

#: Namespace (and contract version) of the trading center's sales-company archive push.
ARCHIVE_NAMESPACE = "urn:gridbus:tc:sales-company-archive:1"

#: The value Fig. 9 prints for "no legal representative given".
NONE_GIVEN = "无"


@dataclass(frozen=True)
class Fig9Row:
    """One row of Fig. 9; every value is the text printed in the figure."""

    row: int
    name: str
    short_name: str
    credit_code: str
    parent_company: str
    legal_representative: str
    nature: str
    address: str
    registration_place: str
    registered_capital_10k_yuan: str
    shareholders: str
    established_on: str
    effective_date: str


def _load() -> tuple[Fig9Row, ...]:
    names = [f.name for f in fields(Fig9Row)]
    with TSV.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if reader.fieldnames != names:
            raise ValueError(f"{TSV}: header {reader.fieldnames} does not match {names}")
        rows = tuple(Fig9Row(**{**record, "row": int(record["row"])}) for record in reader)
    if [r.row for r in rows] != list(range(1, 21)):
        raise ValueError(f"{TSV}: rows 1-20 expected in order, got {[r.row for r in rows]}")
    return rows


FIG9_ROWS: tuple[Fig9Row, ...] = _load()


def archive_xml(row: Fig9Row, *, archive_id: str | None = None, revision: int = 1, status: str = "active",
                pushed_at: str = "2026-11-20T09:00:00+08:00") -> bytes:
    """``row`` as the trading center's SalesCompanyArchivePushed document (UTF-8, with declaration).

    ``archive_id`` defaults to ``FIG9-<row>``; LegalRepresentative is left out when Fig. 9
    gives none (无).
    """
    ns = ARCHIVE_NAMESPACE
    root = etree.Element(f"{{{ns}}}SalesCompanyArchivePushed", nsmap={None: ns})

    def add(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
        child = etree.SubElement(parent, f"{{{ns}}}{tag}")
        child.text = text
        return child

    add(root, "ArchiveId", archive_id if archive_id is not None else f"FIG9-{row.row:02d}")
    add(root, "ArchiveRevision", str(revision))
    add(root, "PushedAt", pushed_at)
    add(root, "CreditCode", row.credit_code)
    add(root, "Status", status)
    add(root, "Name", row.name)
    add(root, "ShortName", row.short_name)
    add(root, "Nature", row.nature)
    add(root, "Address", row.address)
    add(root, "RegistrationPlace", row.registration_place)
    add(root, "RegisteredCapital", row.registered_capital_10k_yuan)
    add(add(add(root, "Shareholders"), "Shareholder"), "Name", row.shareholders)
    add(root, "EstablishedOn", row.established_on)
    if row.legal_representative != NONE_GIVEN:
        add(root, "LegalRepresentative", row.legal_representative)
    add(root, "EffectiveDate", row.effective_date)
    return etree.tostring(root, encoding="utf-8", xml_declaration=True)
