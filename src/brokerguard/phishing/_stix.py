"""Indicator export in STIX 2.1 for industry sharing (Financial ISAC, JPCERT/CC).

Phishing findings become indicators on their URL and domain; campaigns raised by the detection
engine (``campaigns.ndjson``) become Campaign objects carrying the targeted symbols
(``x_brokerguard_symbols``), with indicators for their attacker IP addresses linked by
``indicates`` relationships. Objects are built with the OASIS ``stix2`` library, and their ids
are UUIDv5 of their content, so exporting the same finding twice gives the same id and partners
can de-duplicate.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from brokerguard.evaluate import Campaign, CampaignSymbol
from brokerguard.phishing._score import Finding

__all__ = ["CampaignLine", "CampaignSymbol", "StixError", "export_stix", "read_campaigns"]

_NS = uuid.UUID("6f1c3c1e-5b7e-4b8e-9a43-1f0d6a1e2b10")  # BrokerGuard's namespace for STIX ids

# ``created`` of an object whose own first time is not known (an indicator, the identity). Ids
# are stable across exports, and STIX 2.1 forbids changing ``created`` between versions of an
# object; the export time changed it on every run. No export can tell when an earlier one first
# wrote the object, so the rule is a fixed time: the day STIX 2.1 became an OASIS standard, which
# no STIX 2.1 object predates. ``modified`` is the export time: each export is a new version.
_FIRST_VERSION = datetime(2021, 6, 10, tzinfo=UTC)


class StixError(ValueError):
    """Input that cannot be exported; the message names the file, line and field."""


class CampaignLine(Campaign, frozen=True, kw_only=True):
    """One line of the engine's ``campaigns.ndjson``: the evaluation's :class:`Campaign` (so the
    two never drift apart) plus the infrastructure the engine records, when it does."""

    infrastructure: list[str] = []  # "ip:1.2.3.4", "asn:NAME", "ua:..."


def read_campaigns(path: str | Path) -> list[CampaignLine]:
    """Decode ``campaigns.ndjson``; a bad line raises :class:`StixError` with its number."""
    p = Path(path)
    decoder = msgspec.json.Decoder(CampaignLine)
    out = []
    try:
        lines = p.read_bytes().splitlines()
    except OSError as exc:
        raise StixError(f"{p}: cannot read: {exc.strerror}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(decoder.decode(line))
        except msgspec.DecodeError as exc:
            raise StixError(f"{p}:{n}: {exc}") from None
    return out


def _sid(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(_NS, kind + '|' + key)}"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _versioned(created: datetime, when: datetime) -> dict[str, datetime]:
    """``created`` and ``modified`` of an object exported at ``when`` (never before created)."""
    return {"created": created, "modified": max(created, when)}


def _indicator(
    pattern: str, name: str, description: str, valid_from: datetime, creator: str, labels: list[str]
) -> Any:
    import stix2

    # valid_from stays the export time (when BrokerGuard asserts the indicator): no rule fixes
    # it, and the first time is unknown; the fixed ``created`` would claim years of validity.
    return stix2.Indicator(
        id=_sid("indicator", pattern),
        name=name,
        description=description,
        pattern=pattern,
        pattern_type="stix",
        valid_from=valid_from,
        indicator_types=["malicious-activity"],
        labels=labels,
        created_by_ref=creator,
        **_versioned(_FIRST_VERSION, valid_from),
    )


def export_stix(
    findings: Iterable[Finding],
    campaigns: Iterable[CampaignLine] = (),
    *,
    organisation: str = "BrokerGuard user",
    now: datetime | None = None,
) -> str:
    """A STIX 2.1 bundle (JSON text) of the phishing findings and the campaigns."""
    import stix2  # imported here: it is slow to import and only exports need it

    when = now or datetime.now(UTC)
    identity = stix2.Identity(
        id=_sid("identity", organisation),
        name=organisation,
        identity_class="organization",
        **_versioned(_FIRST_VERSION, when),
    )
    objects: dict[str, object] = {identity.id: identity}
    for f in findings:
        if not f.is_phishing:
            continue
        url = f.target or f.url
        why = "; ".join(r.en for r in f.reasons if r.weight > 0)
        brand = f"imitating {f.brand}" if f.brand else "brand unknown"
        labels = ["phishing"] + ([f"brand:{f.brand}"] if f.brand else [])
        ind = _indicator(
            f"[url:value = '{_quote(url)}']",
            f"Phishing URL ({brand})",
            f"score {f.score:.2f}: {why}",
            when,
            identity.id,
            labels,
        )
        objects[ind.id] = ind
        if f.host and not _is_ip(f.host):
            dom = _indicator(
                f"[domain-name:value = '{_quote(f.host)}']",
                f"Phishing host ({brand})",
                f"host of {url}",
                when,
                identity.id,
                labels,
            )
            objects[dom.id] = dom
    for c in campaigns:
        symbols = [f"{s.market}:{s.symbol}" for s in c.symbols]
        other = [i for i in c.infrastructure if not i.startswith("ip:")]
        camp = stix2.Campaign(
            id=_sid("campaign", c.id),
            name=f"BrokerGuard campaign {c.id}",
            description=(
                f"Unauthorized trading campaign raised {c.raised_at.isoformat()}; "
                f"{len(c.accounts)} accounts; targeted symbols: {', '.join(symbols) or '-'}"
                + (f"; other infrastructure: {', '.join(other)}" if other else "")
            ),
            first_seen=c.raised_at,
            created_by_ref=identity.id,
            **_versioned(c.raised_at, when),  # the campaign's id is its own: raised_at is fixed
            custom_properties={"x_brokerguard_symbols": symbols},
        )
        objects[camp.id] = camp
        for item in c.infrastructure:
            if not item.startswith("ip:"):
                continue
            ip = item[3:]
            kind = _ip_kind(ip)
            if kind is None:
                raise StixError(f"campaign {c.id}: infrastructure: {item!r} is not an IP address")
            ind = _indicator(
                f"[{kind}:value = '{ip}']",
                f"Attacker address {ip}",
                f"used by campaign {c.id}",
                when,
                identity.id,
                ["account-takeover"],
            )
            objects[ind.id] = ind
            rel = stix2.Relationship(
                id=_sid("relationship", f"{ind.id}|{camp.id}"),
                relationship_type="indicates",
                source_ref=ind.id,
                target_ref=camp.id,
                **_versioned(c.raised_at, when),
            )
            objects[rel.id] = rel
    bundle = stix2.Bundle(
        id=_sid("bundle", "|".join(sorted(objects))),
        objects=list(objects.values()),
        allow_custom=True,
    )
    return bundle.serialize(pretty=True, ensure_ascii=False)


def _ip_kind(text: str) -> str | None:
    try:
        return "ipv4-addr" if ipaddress.ip_address(text).version == 4 else "ipv6-addr"
    except ValueError:
        return None


def _is_ip(host: str) -> bool:
    return _ip_kind(host) is not None or host.replace(".", "").isdigit()
