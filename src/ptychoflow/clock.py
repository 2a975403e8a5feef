"""The one timestamp style: ISO 8601 in UTC for machines, local wall-clock text for people.

Stores keep epoch seconds (cheap to compare and sort). Everything shown leaves through
here: ``--json`` and the dashboard's API carry ISO 8601 strings, as the Globus Flows API
does (``2026-11-29T06:22:04.125000+00:00``); tables and logs read ``2026-11-29 07:22:04``
in the machine's local time zone.
"""

from __future__ import annotations

from datetime import datetime, timezone

TEXT_FORMAT = "%Y-%m-%d %H:%M:%S"


def iso(stamp: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC (None stays None)."""
    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc).isoformat()


def text(stamp: float | None, missing: str = "-") -> str:
    """Epoch seconds as local ``YYYY-MM-DD HH:MM:SS`` for tables and log lines."""
    return missing if not stamp else datetime.fromtimestamp(stamp).strftime(TEXT_FORMAT)


def text_from_iso(value: str | None, missing: str = "-") -> str:
    """An ISO 8601 string (from a service's API) in the same local text style."""
    if not value:
        return missing
    try:
        return datetime.fromisoformat(value).astimezone().strftime(TEXT_FORMAT)
    except ValueError:
        return value
