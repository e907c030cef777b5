"""Reading events off the wire: one event for ``/v1/decide``, a batch for ``/v1/events``.

Events are decoded with the same msgspec decoder as ``events.ndjson``
(:func:`~brokerguard.events.decode_line`), so what ``brokerguard simulate`` writes is exactly
what the API accepts, and a bad event is refused with the field named. An ``analyst`` event
(an analyst's conclusion) is refused as ``brokerguard ingest`` refuses it
(:func:`~brokerguard.events.refuse_analyst`): those come from the analyst API and the console.
A batch is read whole before anything is applied: one bad event refuses the batch, and nothing
of it reaches the engine or the database.
"""

from __future__ import annotations

import msgspec

from brokerguard.events import Event, EventError, decode_line, refuse_analyst
from brokerguard.guard import decision_point
from brokerguard.service.errors import InvalidInput, MalformedBody, UnsupportedMediaType

__all__ = ["JSON_TYPES", "NDJSON_TYPES", "parse_batch", "parse_decision_event"]

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _invalid(exc: EventError, *, prefix: str = "", line: int | None = None) -> InvalidInput:
    message = str(exc)
    malformed = message.startswith("malformed JSON") or "malformed JSON" in message
    field = exc.field
    if field is not None and prefix:
        field = f"{prefix}.{field}" if not field.startswith("[") else prefix + field
    elif prefix and field is None:
        field = prefix
    extra = {"line": line} if line is not None else None
    if malformed and not prefix and line is None:
        return MalformedBody(message, field=None)
    return InvalidInput(message, field=field, code="invalid_event", extra=extra)


def parse_decision_event(body: bytes, content_type: str | None) -> tuple[Event, str]:
    """The event and its decision point; refuses events that are not decision points."""
    media = _media_type(content_type)
    if media and media not in JSON_TYPES:
        raise UnsupportedMediaType(f"send the event as application/json, not {media}")
    if not body.strip():
        raise MalformedBody("the body is empty: send one event as JSON")
    try:
        event = refuse_analyst(decode_line(body))
    except EventError as exc:
        raise _invalid(exc) from None
    point = decision_point(event)
    if point is None:
        kind = event.__struct_config__.tag
        field = "action" if kind == "order" else "type"
        raise InvalidInput(
            f"a {kind!r} event{' cancel' if field == 'action' else ''} is not a decision point "
            "(login, new order, withdrawal, settings change); send it to /v1/events",
            field=field,
            code="invalid_event",
        )
    return event, point


def parse_batch(body: bytes, content_type: str | None) -> list[Event]:
    """Events of a JSON array (``application/json``) or NDJSON body, all valid or none.

    Errors name the item: ``field`` is ``[i].path`` for an array (0-based ``i``), and ``line``
    (1-based) with the plain field path for NDJSON.
    """
    media = _media_type(content_type)
    if media and media not in JSON_TYPES + NDJSON_TYPES:
        raise UnsupportedMediaType(
            f"send events as application/json (an array) or application/x-ndjson, not {media}"
        )
    stripped = body.lstrip()
    if not stripped:
        raise MalformedBody("the body is empty: send a JSON array or NDJSON lines of events")
    if stripped[:1] == b"[":
        try:
            raws = _raw_list.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedBody(f"malformed JSON array: {exc}") from None
        events = []
        for i, raw in enumerate(raws):
            try:
                events.append(refuse_analyst(decode_line(bytes(raw))))
            except EventError as exc:
                raise _invalid(exc, prefix=f"[{i}]") from None
        return events
    if media in JSON_TYPES and stripped[:1] != b"{":
        raise MalformedBody("an application/json batch is a JSON array of events")
    events = []
    for number, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            try:
                events.append(refuse_analyst(decode_line(line, line=number), line=number))
            except EventError as exc:
                raise _invalid(exc, line=number) from None
    return events
