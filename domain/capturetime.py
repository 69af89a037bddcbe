"""A photo's capture time as it may be published: a real calendar date and time of day, a real time-zone offset,
and a plausible moment for a photograph to have been taken. Shared by preprocess (EXIF, XMP, IPTC-IIM and video
container dates) and the renderings (JSON-LD `dateCreated`, XMP `photoshop:DateCreated`), so only a valid
xsd:dateTime ever leaves.

Dropped, as a missing date is (the next source in EXIF → XMP → IPTC order then wins):
- not a date or time (month 13, Feb 30, 25:61:61; the leap second 60 too, which xsd:dateTime refuses);
- an offset beyond ±14:00 (the widest in use: UTC+14 Kiribati, UTC-12) or with minutes over 59;
- before EARLIEST_YEAR (the first photographs are from the 1820s-1830s; 0001 and 0000 are cameras' and tools' "no
  date"), or more than a day after now (9999-12-31 is a placeholder, not a future photo; a day covers every
  time zone and a camera clock a little fast).
"""
from __future__ import annotations

import datetime as dt
import re

EARLIEST_YEAR = 1800
MAX_OFFSET_MINUTES = 14 * 60
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def capture_time(year: str, month: str, day: str, hour: str, minute: str, second: str, offset: str | None = None,
                 *, fraction: str = "", now: dt.datetime | None = None) -> str | None:
    """'YYYY-MM-DDThh:mm:ss[.fraction][±hh:mm]' ('Z' as '+00:00'; '+0200' as '+02:00'), or None when the parts
    are not a plausible capture time (see the module)."""
    try:
        when = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except (TypeError, ValueError):
        return None
    if when.year < EARLIEST_YEAR:
        return None
    off = ""
    if offset:
        m = _OFFSET.match("+00:00" if offset == "Z" else offset)
        if not m or int(m.group(3)) > 59:
            return None
        minutes = int(m.group(2)) * 60 + int(m.group(3))
        if minutes > MAX_OFFSET_MINUTES:
            return None
        off = f"{m.group(1)}{m.group(2)}:{m.group(3)}"
        tz = dt.timezone(dt.timedelta(minutes=-minutes if m.group(1) == "-" else minutes))
        try:
            utc = when.replace(tzinfo=tz).astimezone(dt.timezone.utc).replace(tzinfo=None)
        except OverflowError:  # past year 9999 in UTC: far in the future
            return None
    else:
        utc = when  # a local time: the day of slack below covers its zone
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    if utc > now + dt.timedelta(days=1):
        return None
    return f"{when:%Y-%m-%dT%H:%M:%S}{fraction}{off}"
