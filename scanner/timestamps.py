"""The inventory's one timestamp format, 2026-11-23T08:36:00Z (UTC, whole seconds, sorts as text)."""

from __future__ import annotations

import datetime as dt
import re

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def clock() -> dt.datetime:
    """The current moment; tests replace it (monkeypatch scanner.timestamps.clock) to move time."""
    return dt.datetime.now(dt.timezone.utc)


def utc_now() -> dt.datetime:
    """Now, to the second: every timestamp the inventory writes comes from here."""
    return clock().replace(microsecond=0)


def iso(moment: dt.datetime) -> str:
    """A moment in the inventory's format."""
    return moment.astimezone(dt.timezone.utc).strftime(FORMAT)


_ODD_OFFSET = re.compile(r"([+-])(\d):(\d\d)$")
# UTC with a fraction or without, as Google and Microsoft send most times: no parsing needed.
_UTC = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?Z")


def normalize_timestamp(value: str | None) -> str | None:
    """Parse the timestamps APIs send (fractions, "Z", even "-8:00") into the inventory format."""
    if not value:
        return None
    plain = _UTC.fullmatch(value)
    if plain:  # a million of these in a large scan: check the date, skip the formatting
        try:
            dt.datetime.fromisoformat(plain.group(1))
        except ValueError:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
        return plain.group(1) + "Z"
    text = _ODD_OFFSET.sub(r"\g<1>0\g<2>:\g<3>", value.strip())
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return iso(moment)


def parse_iso(value: str) -> dt.datetime:
    """The aware datetime of a timestamp in the inventory's format."""
    return dt.datetime.strptime(value, FORMAT).replace(tzinfo=dt.timezone.utc)
