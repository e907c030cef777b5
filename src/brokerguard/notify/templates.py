"""Customer notices in Japanese and English, from the data file ``templates.toml``.

A notice is a kind (``new_login``, ``account_locked``, ...) and a few fields; :func:`render`
turns it into a subject, a mail body (with the fixed footer telling the customer to use the
bookmarked site or the app) and a short text for SMS and push.

No notice may carry a link: the supervisory guideline forbids login links in mails, and a
customer taught that real notices never have links is harder to phish. Field values can come
from an attacker (a passkey's name, a device string), so they are *defanged* before they are
put in: URLs are removed and the dots of host names bracketed, so no mail client turns them
into links. :func:`render` refuses to return a text in which a URL survived.

>>> n = render("account_locked", "en", {"when": "2025-03-20 10:00 JST", "reason": "failures"})
>>> n.subject
'[BrokerGuard] Your account is locked'
>>> "after repeated failed sign-ins" in n.body
True
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from string import Template
from typing import Literal

import msgspec

__all__ = ["KINDS", "LANGS", "Lang", "Rendered", "TemplateError", "defang", "fields_of", "render"]

Lang = Literal["ja", "en"]
LANGS: tuple[Lang, ...] = ("ja", "en")
TRANSLATED = ("what", "reason", "purpose", "operation", "place")
"""Fields whose value, when it is a known label key (``email``, ``failures``, a country code
such as ``JP``), is translated."""

_URL = re.compile(r"(?i)(?:[a-z][a-z0-9+.-]*://|www\.)\S*")
"""A URL, wherever it starts: no word boundary is asked for, because a value that glues one to
a word (``x_https://…``, ``私のhttps://…``) would otherwise keep it and :func:`render` refuse the
notice, so that a customer would never be warned (of a passkey an attacker added, say)."""
_HOST = re.compile(r"(?i)\b(?:[a-z0-9-]+\.)+[a-z]{2,63}\b")
URL_PATTERN = re.compile(r"(?i)(?:https?://|www\.|\b[a-z][a-z0-9+.-]*://)")


class TemplateError(ValueError):
    """An unknown notice kind or language, or a field missing for the notice."""


class Rendered(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    lang: Lang
    subject: str
    body: str
    short: str


@cache
def _data() -> dict[str, dict]:
    text = resources.files("brokerguard.notify").joinpath("templates.toml").read_text("utf-8")
    return tomllib.loads(text)


def _kinds() -> tuple[str, ...]:
    return tuple(k for k in _data() if k not in ("footer", "labels"))


KINDS: tuple[str, ...] = _kinds()


def defang(value: str) -> str:
    """Make a field value safe to show in a mail: no URL, no host name a client would link.

    >>> defang("Pixel https://evil.example/x on sbisec.example-phish.top")
    'Pixel [link removed] on sbisec[.]example-phish[.]top'
    """
    value = _URL.sub("[link removed]", value)
    value = _HOST.sub(lambda m: m.group(0).replace(".", "[.]"), value)
    return " ".join(value.split())  # no newlines: a field cannot forge lines of the notice


def fields_of(kind: str) -> frozenset[str]:
    """The fields a notice needs (besides ``broker`` and ``support``, which the notifier gives)."""
    if kind not in KINDS:
        raise TemplateError(f"unknown notice kind {kind!r}; known: {', '.join(KINDS)}")
    names: set[str] = set()
    for lang in LANGS:
        for part in ("subject", "body", "sms"):
            names |= set(Template(_data()[kind][lang][part]).get_identifiers())
    return frozenset(names - {"broker", "support"})


def render(
    kind: str,
    lang: str,
    fields: Mapping[str, str],
    *,
    broker: str = "BrokerGuard",
    support: str | None = None,
) -> Rendered:
    """Render one notice; raises :class:`TemplateError` naming a missing field or bad kind."""
    if lang not in LANGS:
        raise TemplateError(f"unknown language {lang!r}; use one of {', '.join(LANGS)}")
    need = fields_of(kind)
    missing = sorted(need - set(fields))
    if missing:
        raise TemplateError(f"notice {kind!r} needs the field(s) {', '.join(missing)}")
    data = _data()
    labels: dict[str, str] = data["labels"][lang]
    values = {name: defang(str(value)) for name, value in fields.items()}
    for name in TRANSLATED:
        if name in values and values[name] in labels:
            values[name] = labels[values[name]]
    if support is None:
        support = "お客様サポート" if lang == "ja" else "our customer support"
    values["broker"] = defang(broker)
    values["support"] = defang(support)
    t = data[kind][lang]
    subject = " ".join(Template(t["subject"]).substitute(values).split())
    footer = Template(data["footer"][lang]).substitute(values)  # each part once: a "$" in
    body = Template(t["body"]).substitute(values).strip() + "\n\n" + footer  # a value stays
    short = Template(t["sms"]).substitute(values)
    for text in (subject, body, short):
        if URL_PATTERN.search(text):  # a template edit that added a link, or a defang gap
            raise TemplateError(f"notice {kind!r} ({lang}) would contain a link")
    return Rendered(kind=kind, lang=lang, subject=subject, body=body, short=short)  # type: ignore[arg-type]
