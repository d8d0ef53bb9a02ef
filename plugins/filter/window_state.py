# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: window_state
short_description: Whether a list of maintenance windows is open now, and when it opens or closes
version_added: 0.1.0
description:
  - Takes windows as the P(edgeml.fleet.sites#inventory) inventory gives them
    (C(edgeml_maintenance_windows), C(edgeml_download_windows)) - a list of
    C({days, start, end, timezone}) - and tells whether one is open at O(now).
  - An empty list means any time - always open.
  - Times are wall-clock times in the window's timezone. A window whose end is not after its start
    runs past midnight into the next day and belongs to the day it starts (C(Fri 23:00-01:00) is
    open on Saturday at 00:30).
  - "Daylight saving time: a window opens the first time the site's clock reaches (or jumps past)
    its start and closes the first time after that the clock reaches (or jumps past) its end. So on
    the day clocks spring forward a start or end in the skipped hour is the moment of the jump
    (C(02:30) is C(03:00) new time in Europe/Berlin), and a window wholly inside the skipped hour
    does not open that day; on the day clocks fall back a time in the repeated hour is its first
    occurrence and a window does not open twice."
positional: _input
options:
  _input:
    description: The windows, each a dict with C(days) (C(mon) .. C(sun)), C(start) and C(end)
      (C(HH:MM)) and C(timezone) (an IANA name).
    type: list
    elements: dict
    required: true
  now:
    description: The moment to judge, an aware datetime or an ISO 8601 text with its offset
      (C(2026-03-28T02:30:00+01:00), C(...Z)). Empty or omitted is the controller's clock.
    type: raw
"""

EXAMPLES = r"""
- name: Is the apply window open
  ansible.builtin.debug:
    msg: "{{ edgeml_maintenance_windows | edgeml.fleet.window_state(now='2026-03-28T02:30:00+01:00') }}"
"""

RETURN = r"""
_value:
  description: The state.
  type: dict
  contains:
    open:
      description: Whether a window is open at O(now) (always true for no windows).
      type: bool
    window:
      description: The window open now or, when closed, the next to open, as
        C(Sat 02:00-04:00 Europe/Berlin); empty for no windows.
      type: str
    opens_at:
      description: When that window opens (opened), ISO 8601 UTC; null for no windows.
      type: str
    closes_at:
      description: When that window closes, ISO 8601 UTC; null for no windows.
      type: str
"""

import re
from datetime import datetime, time, timedelta, timezone

from ansible.errors import AnsibleFilterError

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python < 3.9
    ZoneInfo = None

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOCK_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
UTC = timezone.utc


def _fail(window, what):
    raise AnsibleFilterError(
        f"window_state: window {window!r} {what}; each window is a dict with days (mon..sun), "
        "start and end (HH:MM) and timezone (IANA name), as the edgeml.fleet.sites inventory "
        "writes edgeml_maintenance_windows")


def _parse(window):
    if not isinstance(window, dict):
        _fail(window, "is not a dict")
    days = window.get("days")
    if not isinstance(days, (list, tuple)) or not days or any(d not in DAYS for d in days):
        _fail(window, "needs days, a non-empty list of mon..sun")
    clocks = []
    for key in ("start", "end"):
        match = CLOCK_RE.match(str(window.get(key, "")))
        if not match:
            _fail(window, f"needs {key} as HH:MM")
        clocks.append(time(int(match[1]), int(match[2])))
    name = window.get("timezone") or "UTC"
    if ZoneInfo is None:
        raise AnsibleFilterError("window_state needs Python 3.9 or later (zoneinfo) on the controller")
    try:
        zone = ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        _fail(window, f"has an unknown timezone {name!r}")
    return {"days": {DAYS.index(d) for d in days}, "start": clocks[0], "end": clocks[1],
            "zone": zone, "label": f"{_days_label(days)} {window['start']}-{window['end']} {name}"}


def _days_label(days):
    """The days as written: daily, a run (Sat-Mon, wrapping the week) or a list."""
    idx = sorted({DAYS.index(d) for d in days})
    if len(idx) == 7:
        return "daily"
    for first in idx:  # a run that starts at first and wraps as far as it needs
        run = [(first + i) % 7 for i in range(len(idx))]
        if sorted(run) == idx:
            names = [DAYS[run[0]].title(), DAYS[run[-1]].title()]
            return names[0] if len(idx) == 1 else "-".join(names) if len(idx) > 2 else ",".join(names)
    return ",".join(DAYS[i].title() for i in idx)


def _now(now):
    if now in (None, ""):
        return datetime.now(UTC)
    if isinstance(now, str):
        try:
            now = datetime.fromisoformat(now.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise AnsibleFilterError(f"window_state: now={now!r} is not an ISO 8601 time such as "
                                     "2026-03-28T02:30:00+01:00") from None
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise AnsibleFilterError(f"window_state: now={now!r} needs a timezone offset "
                                 "(2026-03-28T02:30:00+01:00 or ...Z); a bare local time is ambiguous")
    return now.astimezone(UTC)


def _reach(day, clock, zone):
    """The first instant (UTC) at which the clock in zone reads day+clock or later."""
    local = datetime.combine(day, clock, tzinfo=zone)  # fold=0: the first of a repeated time
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # The time is in a gap (clocks jumped past it): the answer is the moment of the jump, between
    # the time read with the offset after the jump (earlier) and with the one before it.
    low, high = local.replace(fold=1).astimezone(UTC), instant
    low, high = min(low, high), max(low, high)
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= local.replace(tzinfo=None):
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def _occurrences(window, now):
    """(opens, closes) of a window on the local days around now, empty ones left out."""
    today = now.astimezone(window["zone"]).date()
    for offset in range(-2, 9):
        day = today + timedelta(days=offset)
        if day.weekday() not in window["days"]:
            continue
        end_day = day if window["end"] > window["start"] else day + timedelta(days=1)
        opens = _reach(day, window["start"], window["zone"])
        closes = _reach(end_day, window["end"], window["zone"])
        if closes > opens:
            yield opens, closes


def _iso(instant):
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_state(windows, now=None):
    if windows in (None, ""):
        windows = []
    if not isinstance(windows, (list, tuple)):
        raise AnsibleFilterError(f"window_state: expected a list of windows, got {windows!r}")
    now = _now(now)
    if not windows:
        return {"open": True, "window": "", "opens_at": None, "closes_at": None}
    current, upcoming = None, None
    for window in map(_parse, windows):
        for opens, closes in _occurrences(window, now):
            if opens <= now < closes:
                if current is None or closes > current[1]:
                    current = (opens, closes, window["label"])
            elif opens > now and (upcoming is None or opens < upcoming[0]):
                upcoming = (opens, closes, window["label"])
    chosen = current or upcoming
    if chosen is None:  # pragma: no cover - every window opens within a week and a day
        raise AnsibleFilterError(f"window_state: none of {windows!r} opens in the next week")
    return {"open": current is not None, "window": chosen[2],
            "opens_at": _iso(chosen[0]), "closes_at": _iso(chosen[1])}


class FilterModule:
    def filters(self):
        return {"window_state": window_state}
