"""Typed events: what a broker's login, trading and settings systems log.

Every event is a frozen msgspec Struct in one tagged union, keyed by its ``type`` field, so that
one decoder reads any line of an NDJSON stream and a ``match`` dispatches on the class. Fields are
limited to what a real broker records (IP address, user agent, device cookie, orders, fills,
holdings, reference and market data); nothing here may carry knowledge that only a simulator has,
because the detectors read these events and nothing else.

Decoding is strict: unknown types, unknown fields, missing fields, wrong types and impossible
values are rejected with an :class:`EventError` that names the line and the field.

>>> e = decode_line(b'{"type":"withdrawal","id":"w1","ts":"2025-03-20T10:00:00+09:00",'
...                 b'"account":"A1","session":"s1","amount_jpy":50000}')
>>> e.amount_jpy
50000.0
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Annotated, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

__all__ = [
    "ANALYST_EVENT_REFUSED",
    "AccountSnapshot",
    "AnalystAction",
    "CanaryHit",
    "ChallengeResult",
    "DECISION_POINTS",
    "Event",
    "EventError",
    "Execution",
    "Factor",
    "HoldingsSnapshot",
    "Instrument",
    "LoginAttempt",
    "MarketBar",
    "Order",
    "Position",
    "SeenOnce",
    "SessionActivity",
    "SettingsChange",
    "Withdrawal",
    "decode_line",
    "encode",
    "encode_line",
    "leaves",
    "read_ndjson",
    "refuse_analyst",
    "write_ndjson",
]

# --- constrained scalar types -------------------------------------------------------------
Id = Annotated[str, Meta(min_length=1, max_length=128)]
Text = Annotated[str, Meta(max_length=1024)]
Timestamp = Annotated[datetime, Meta(tz=True)]
Price = Annotated[float, Meta(gt=0)]
Money = Annotated[float, Meta(ge=0)]
# JSON integers have no size limit and msgspec keeps them whole; the detectors' float arithmetic
# overflows on one of hundreds of digits, so counts stop at what a 64-bit integer holds.
MAX_COUNT = 2**63 - 1
Quantity = Annotated[int, Meta(gt=0, le=MAX_COUNT)]
Volume = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
Referrer = Annotated[str, Meta(min_length=1, max_length=2048)]

Factor = Literal["password", "passkey", "sms", "email", "totp", "oob"]
"""Authentication factors. ``oob`` is an out-of-band confirmation to the registered contact."""

Market = Literal["TSE", "HK", "CN", "US"]
SettingsField = Literal[
    "email", "phone", "bank_account", "password", "mfa", "passkey", "notifications"
]


class _Event(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True
):
    """Fields every event has: a unique id and a timezone-aware timestamp."""

    id: Id
    ts: Timestamp


class _AccountEvent(_Event, frozen=True, kw_only=True):
    account: Id


def _check_ip(ip: str) -> None:
    # inet_pton is strict (no leading zeros, no short forms) and far cheaper than ipaddress.
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    except (OSError, ValueError):
        raise ValueError(f"`ip` is not an IP address: {ip!r}") from None


def _check_origin(origin: str) -> None:
    # An origin as browsers write it: scheme://host[:port], nothing after; or "null" (a copied
    # page opened from a file or a sandboxed frame has an opaque origin).
    if origin == "null":
        return
    parts = urlsplit(origin)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or not port_ok
    ):
        raise ValueError(f"`origin` is not an http(s) origin (scheme://host[:port]): {origin!r}")


def _check_referrer(referrer: str) -> None:
    # A Referer header is an absolute http(s) URL (RFC 9110 10.1.3) of printable characters;
    # anything else is a logging fault that should be seen, not guessed at.
    if not referrer.lower().startswith(("http://", "https://")):
        raise ValueError(f"`referrer` must be an http:// or https:// URL: {referrer[:80]!r}")
    if any(c.isspace() or not c.isprintable() for c in referrer):
        raise ValueError(
            f"`referrer` must not contain spaces or control characters: {referrer[:80]!r}"
        )


class LoginAttempt(_AccountEvent, frozen=True, kw_only=True, tag="login"):
    """A sign-in: the first factors presented and whether they were valid.

    ``success`` is the credential check of the broker's own login system; the guard's decision
    (which may still challenge or deny) comes on top of it. ``device`` is the device cookie, or
    ``None`` when the browser sent none. ``referrer`` is the HTTP Referer the login system
    logged (``None`` when there was none): a sign-in that arrives from a phishing page names it.
    """

    session: Id
    ip: str
    user_agent: Text
    device: Id | None = None
    factors: list[Factor]
    success: bool
    referrer: Referrer | None = None

    def __post_init__(self) -> None:
        _check_ip(self.ip)
        if not self.factors:
            raise ValueError("`factors` must name at least one factor")
        if self.referrer is not None:
            _check_referrer(self.referrer)


class ChallengeResult(_AccountEvent, frozen=True, kw_only=True, tag="challenge"):
    """The outcome of a step-up the guard asked for (``ref`` is the event that was stepped up)."""

    session: Id | None = None
    ref: Id
    factor: Factor
    outcome: Literal["passed", "failed", "abandoned"]


class SessionActivity(_AccountEvent, frozen=True, kw_only=True, tag="session"):
    """A request inside an existing session, with the network and browser it came from."""

    session: Id
    ip: str
    user_agent: Text
    device: Id | None = None
    action: Literal["view", "portfolio", "orders", "settings", "logout"] = "view"

    def __post_init__(self) -> None:
        _check_ip(self.ip)


class Order(_AccountEvent, frozen=True, kw_only=True, tag="order"):
    """A new order or a cancel. ``limit_price`` is required for limit orders, absent otherwise."""

    session: Id
    order_id: Id
    action: Literal["new", "cancel"] = "new"
    symbol: Id
    market: Market
    side: Literal["buy", "sell"]
    quantity: Quantity
    price_type: Literal["limit", "market"]
    limit_price: Price | None = None
    margin: bool = False
    ip: str | None = None
    user_agent: Text | None = None

    def __post_init__(self) -> None:
        if self.price_type == "limit" and self.limit_price is None:
            raise ValueError("`limit_price` is required when `price_type` is 'limit'")
        if self.price_type == "market" and self.limit_price is not None:
            raise ValueError("`limit_price` must be absent when `price_type` is 'market'")
        if self.ip is not None:
            _check_ip(self.ip)


class Execution(_AccountEvent, frozen=True, kw_only=True, tag="execution"):
    """A fill of an order (partial fills are several executions)."""

    order_id: Id
    symbol: Id
    market: Market
    side: Literal["buy", "sell"]
    quantity: Quantity
    price: Price
    value_jpy: Money


class Withdrawal(_AccountEvent, frozen=True, kw_only=True, tag="withdrawal"):
    """A request to pay cash out to the registered bank account."""

    session: Id
    amount_jpy: Annotated[float, Meta(gt=0)]


class SettingsChange(_AccountEvent, frozen=True, kw_only=True, tag="settings"):
    """A change of contact, payout account, credentials or notification settings.

    ``new_value_hash`` lets detectors see that several accounts were pointed at the same new
    e-mail or bank account without storing the value itself.
    """

    session: Id
    field: SettingsField
    new_value_hash: Id | None = None


class CanaryHit(_Event, frozen=True, kw_only=True, tag="canary"):
    """The broker's login page reported being rendered under a foreign ``origin``.

    The page's canary (a script and a stylesheet beacon) fires when the page runs anywhere but
    the broker's own origin: a phishing reverse proxy relaying it, or a copy on another site.
    ``ip`` is the address the report came from — for a relaying proxy, the proxy's own — and
    the logins that follow from that address are what the guard distrusts. No account: the
    page is rendered before anyone signs in.
    """

    ip: str
    origin: Annotated[str, Meta(min_length=1, max_length=512)]
    user_agent: Text

    def __post_init__(self) -> None:
        _check_ip(self.ip)
        _check_origin(self.origin)


AnalystActionKind = Literal[
    "force_reverify", "trust_device", "confirm_customer", "confirm_fraud", "dismiss_campaign"
]


class AnalystAction(_Event, frozen=True, kw_only=True, tag="analyst"):
    """What the security team concluded, as an event of the stream.

    An analyst's conclusion changes what the engine should decide next, so it travels the way
    events do: recorded with them, replayed with them and, in the scale-out mode, published to
    the partitions whose engines must hear it, in stream order, so that a replay of the stream
    decides what the cluster decided. The service writes these from its analyst API and
    console; its public event routes refuse them (a login system may not confirm its own
    sign-ins).

    - ``force_reverify`` (``account``): every sign-in and operation asks for a passkey or an
      out-of-band confirmation until the customer passes one;
    - ``trust_device`` (``account``, ``device``): the device cookie is the customer's;
    - ``confirm_customer`` (``account``, ``login``): that sign-in was the customer's own;
    - ``confirm_fraud`` (``login``, no ``account``): that sign-in was an attacker's, and its
      address (and hosting network) is marked for *every* account, which is why the event has
      no account and goes to every partition. The victim's re-verification is a
      ``force_reverify`` of its own;
    - ``dismiss_campaign`` (``campaign``, no account): not an attack; the campaign named by the
      id the engine that raised it gave it (a partition's ``P003-C0001``, a stage shard's
      ``K1-C0002``) stops containing anything. It goes to every partition too.
    """

    action: AnalystActionKind
    account: Id | None = None
    device: Id | None = None
    login: LoginAttempt | None = None
    campaign: Id | None = None

    def __post_init__(self) -> None:
        needs = {
            "force_reverify": ("account",),
            "trust_device": ("account", "device"),
            "confirm_customer": ("account", "login"),
            "confirm_fraud": ("login",),
            "dismiss_campaign": ("campaign",),
        }[self.action]
        for name in ("account", "device", "login", "campaign"):
            given = getattr(self, name) is not None
            if name in needs and not given:
                raise ValueError(f"`{name}` is required for action {self.action!r}")
            if given and name not in needs:
                raise ValueError(f"`{name}` must be absent for action {self.action!r}")
        if (
            self.login is not None
            and self.account is not None
            and self.login.account != self.account
        ):
            raise ValueError(
                f"`login.account` ({self.login.account!r}) is not `account` ({self.account!r})"
            )


class Position(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbol: Id
    market: Market
    quantity: Quantity
    nisa: bool = False


class HoldingsSnapshot(_AccountEvent, frozen=True, kw_only=True, tag="holdings"):
    """An account's cash and positions at a point in time (the broker's nightly snapshot)."""

    cash_jpy: Money
    positions: list[Position] = []


class AccountSnapshot(_AccountEvent, frozen=True, kw_only=True, tag="account"):
    """What the broker knows of an account's set-up: enrolled factors and login options."""

    opened: Timestamp
    passkey_enrolled: bool = False
    password_login: bool = True
    otp_channel: Literal["sms", "email", "totp", "none"] = "sms"


class Instrument(_Event, frozen=True, kw_only=True, tag="instrument"):
    """Reference data of a listed instrument; ``price`` is the last close in JPY."""

    symbol: Id
    market: Market
    segment: Id
    currency: Literal["JPY", "HKD", "CNY", "USD"]
    lot_size: Quantity
    price: Price
    avg_daily_volume: Volume
    market_cap_jpy: Money


class MarketBar(_Event, frozen=True, kw_only=True, tag="bar"):
    """An OHLCV bar starting at ``ts`` and lasting ``minutes``; prices in JPY."""

    symbol: Id
    market: Market
    minutes: Annotated[int, Meta(gt=0, le=1440)]
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Volume

    def __post_init__(self) -> None:
        if not (self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close)):
            raise ValueError("bar prices must satisfy low <= open, close <= high")


Event = (
    LoginAttempt
    | ChallengeResult
    | SessionActivity
    | Order
    | Execution
    | Withdrawal
    | SettingsChange
    | HoldingsSnapshot
    | AccountSnapshot
    | Instrument
    | MarketBar
    | CanaryHit
    | AnalystAction
)

DECISION_POINTS: tuple[type, ...] = (LoginAttempt, Order, Withdrawal, SettingsChange)
"""Events at which the broker asks the guard before going ahead."""


class EventError(ValueError):
    """An input line that is not a valid event; ``line`` is 1-based, ``field`` may be None."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None):
        self.line = line
        self.field = field
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{message}")


ANALYST_EVENT_REFUSED = (
    "`type` 'analyst' is refused: an 'analyst' event is an analyst's conclusion, which comes "
    "only through the analyst API (/v1/accounts/{account}/actions, /v1/cases/{id}) or the "
    "console, never from the broker's systems (a login system may not confirm its own sign-ins)"
)
"""Why the service's event routes and ``brokerguard ingest`` refuse an ``analyst`` event (field
``type``): the one wording of both."""


def refuse_analyst(event: Event, *, line: int | None = None, hint: str = "") -> Event:
    """``event``, unless it is an :class:`AnalystAction`: then :class:`EventError` naming the
    field ``type`` (and ``line``), with ``hint`` (what the caller can do instead) after it."""
    if isinstance(event, AnalystAction):
        message = f"{ANALYST_EVENT_REFUSED}; {hint}" if hint else ANALYST_EVENT_REFUSED
        raise EventError(message, line=line, field="type")
    return event


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)
MAX_LINE_BYTES = 64 * 1024


def field_of_error(message: str) -> str | None:
    """The field a msgspec validation message names (``a.b[0].c``), or None."""
    # msgspec reports paths as "... - at `$.field`" or "... `$.positions[0].symbol`".
    prefix = ""
    if "`$." in message:
        path = message.split("`$.", 1)[1].split("`", 1)[0]
        if "field `" not in message:
            return path
        prefix = path + "."
    if "field `" in message:  # "Object contains unknown field `x`", "missing required field `x`"
        return prefix + message.split("field `", 1)[1].split("`", 1)[0]
    if message.startswith("`") and "`" in message[1:]:
        return message[1:].split("`", 1)[0]
    return None


NOT_UTF8 = "malformed JSON: a string is not UTF-8"


def decode_line(data: bytes | str, *, line: int | None = None) -> Event:
    """Decode one JSON event, raising :class:`EventError` that names the line and field."""
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_LINE_BYTES:
        raise EventError(f"event is {len(data)} bytes, more than {MAX_LINE_BYTES}", line=line)
    try:
        event: Event = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if "Invalid value" in message and "$.type" in message:
            message = f"unknown event type ({message})"
        raise EventError(message, line=line, field=field_of_error(str(exc))) from None
    except msgspec.DecodeError as exc:
        if "UTF-8" in str(exc):  # msgspec 0.23's "Invalid UTF-8 encoded string"
            raise EventError(NOT_UTF8, line=line) from None
        raise EventError(f"malformed JSON: {exc}", line=line) from None
    except UnicodeDecodeError:
        # msgspec before 0.23 raises this (not a DecodeError) for a string that is not UTF-8:
        # without it a stray byte was a 500 in the API and a traceback in replay and ingest.
        raise EventError(NOT_UTF8, line=line) from None
    if not 1 < event.ts.year < 9999 or type(event) is AccountSnapshot:  # the rare cases only
        _check_utc(event, line)
    # The only way a JSON string holds U+0000 (a raw NUL is malformed). A backslash first, as
    # one byte (an int: no buffer to take): the six bytes' search cost a third of the decoding.
    if 0x5C in data and b"\\u0000" in data:
        # PostgreSQL cannot store U+0000 in text: the service decided such an event and then
        # dropped its records
        for path, leaf in leaves(msgspec.to_builtins(event)):
            if isinstance(leaf, str) and "\x00" in leaf:
                message = f"`{path}` contains the character U+0000 (NUL)"
                raise EventError(message, line=line, field=path)
    return event


def leaves(value: object, path: str = "") -> Iterator[tuple[str, object]]:
    """Every value inside ``value`` that is not a dict or a list, with its path (``a.b[0]``),
    depth first: for the checks that must name where a bad value sits (events, policies)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def _check_utc(event: Event, line: int | None) -> None:
    """Refuse a time with no UTC equivalent (``0001-01-01T00:00+09:00``): the engine took it, but
    the service stores times in UTC, so its records were dropped after it had been decided."""
    for name in ("ts", "opened"):
        value = getattr(event, name, None)
        if value is None or 1 < value.year < 9999:  # an offset is less than a day
            continue
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise EventError(
                f"`{name}` is out of range: {value.isoformat()} has no time in UTC",
                line=line,
                field=name,
            ) from None


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


class SeenOnce:
    """Event ids seen so far: a log delivered at least once may repeat a line, and a fill, a
    withdrawal or an attacker's sign-in counted twice is counted wrong (evaluation, reports).
    Offer it only the events that must count once: the set grows with them."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def first(self, event_id: str) -> bool:
        """True the first time ``event_id`` is offered, False for a repeat."""
        if event_id in self._ids:
            return False
        self._ids.add(event_id)
        return True


def encode_line(event: Event) -> bytes:
    return _encoder.encode(event) + b"\n"


def read_ndjson(stream: IO[bytes]) -> Iterator[Event]:
    """Yield events from an NDJSON byte stream; blank lines are skipped."""
    for number, raw in enumerate(stream, start=1):
        if raw.strip():
            yield decode_line(raw, line=number)


def write_ndjson(stream: IO[bytes], events: Iterable[Event]) -> int:
    count = 0
    for event in events:
        stream.write(_encoder.encode(event))
        stream.write(b"\n")
        count += 1
    return count
