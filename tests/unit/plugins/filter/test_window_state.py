"""window_state: open or closed, and when, across midnight, week wraps and DST changes."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.edgeml.fleet.plugins.filter.window_state import DAYS, window_state

UTC = timezone.utc


def win(days, start, end, tz="Europe/Berlin"):
    return {"days": days, "start": start, "end": end, "timezone": tz}


SAT = win(["sat"], "02:00", "04:00")


def test_no_windows_is_always_open():
    assert window_state([], now="2026-01-01T00:00:00Z") == {
        "open": True, "window": "", "opens_at": None, "closes_at": None}


def test_closed_names_the_next_window():
    # Thursday evening: the next is Saturday 02:00 CET = 01:00 UTC.
    assert window_state([SAT], now="2026-11-26T18:00:00Z") == {
        "open": False, "window": "Sat 02:00-04:00 Europe/Berlin",
        "opens_at": "2026-11-28T01:00:00Z", "closes_at": "2026-11-28T03:00:00Z"}


@pytest.mark.parametrize("now, is_open", [
    ("2026-11-28T00:59:59Z", False), ("2026-11-28T01:00:00Z", True),
    ("2026-11-28T02:59:59Z", True), ("2026-11-28T03:00:00Z", False),
    ("2026-11-28T02:30:00+01:00", True), (datetime(2026, 11, 28, 3, 30, tzinfo=ZoneInfo("Europe/Berlin")), True),
])
def test_edges_and_now_forms(now, is_open):
    assert window_state([SAT], now=now)["open"] is is_open


def test_midnight_window_belongs_to_the_day_it_starts():
    fri = [win(["fri"], "23:00", "01:00")]
    state = window_state(fri, now="2026-11-28T00:30:00+01:00")  # Saturday 00:30 local
    assert state["open"] and state["window"] == "Fri 23:00-01:00 Europe/Berlin"
    assert state["closes_at"] == "2026-11-28T00:00:00Z"
    # Friday 00:30 is not Thursday's window.
    assert not window_state(fri, now="2026-11-27T00:30:00+01:00")["open"]
    # Start == end: the whole day from the start.
    assert window_state([win(["fri"], "06:00", "06:00")], now="2026-11-28T05:59:00+01:00")["open"]


def test_week_wrapping_day_range():
    sat_mon = [win(["sat", "sun", "mon"], "02:00", "04:00", "UTC")]
    assert window_state(sat_mon, now="2026-11-30T03:00:00Z")["open"]  # Monday
    state = window_state(sat_mon, now="2026-12-01T03:00:00Z")  # Tuesday
    assert not state["open"] and state["window"] == "Sat-Mon 02:00-04:00 UTC"
    assert state["opens_at"] == "2026-12-05T02:00:00Z"


def test_overlapping_windows_report_the_one_closing_last():
    state = window_state([win(["sat"], "01:00", "03:00", "UTC"), win(["sat"], "02:00", "05:00", "UTC")],
                         now="2026-11-28T02:30:00Z")
    assert state["open"] and state["closes_at"] == "2026-11-28T05:00:00Z"


@pytest.mark.parametrize("days, label", [
    (list(DAYS), "daily"), (["mon", "tue", "wed", "thu", "fri"], "Mon-Fri"), (["sat", "sun"], "Sat,Sun"),
    (["sun", "mon", "sat"], "Sat-Mon"), (["mon", "wed"], "Mon,Wed"), (["thu"], "Thu")])
def test_labels(days, label):
    assert window_state([win(days, "02:00", "03:00", "UTC")], now="2026-01-01T00:00:00Z")["window"] \
        == f"{label} 02:00-03:00 UTC"


# Spring forward: Europe/Berlin 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC);
# America/New_York 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC).
# Fall back: Europe/Berlin 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC);
# America/New_York 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC).
@pytest.mark.parametrize("window, now, opens_at, closes_at", [
    # Start in the skipped hour: opens at the jump.
    (win(["sun"], "02:30", "04:00"), "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"),
    # Spanning the skipped hour: one hour shorter.
    (win(["sun"], "01:00", "04:00"), "2026-03-28T12:00:00Z", "2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z"),
    # Wholly inside the skipped hour: not that day, the Sunday after.
    (win(["sun"], "02:00", "02:45"), "2026-03-28T12:00:00Z", "2026-04-05T00:00:00Z", "2026-04-05T00:45:00Z"),
    (win(["sun"], "02:00", "03:00", "America/New_York"), "2026-03-07T12:00:00Z",
     "2026-03-15T06:00:00Z", "2026-03-15T07:00:00Z"),
    (win(["sun"], "02:30", "03:30", "America/New_York"), "2026-03-07T12:00:00Z",
     "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"),
    # Repeated hour: the first occurrence, once.
    (win(["sun"], "02:00", "02:30"), "2026-10-24T12:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z"),
    # Spanning the repeated hour: one hour longer.
    (win(["sun"], "01:00", "04:00"), "2026-10-24T12:00:00Z", "2026-10-24T23:00:00Z", "2026-10-25T03:00:00Z"),
    (win(["sun"], "01:30", "01:45", "America/New_York"), "2026-10-31T12:00:00Z",
     "2026-11-01T05:30:00Z", "2026-11-01T05:45:00Z"),
    # Midnight-spanning across the change: Sat 23:00 CET -> Sun 03:00 CEST is 3 hours.
    (win(["sat"], "23:00", "03:00"), "2026-03-28T12:00:00Z", "2026-03-28T22:00:00Z", "2026-03-29T01:00:00Z"),
    (win(["sat"], "23:00", "03:00"), "2026-10-24T12:00:00Z", "2026-10-24T21:00:00Z", "2026-10-25T02:00:00Z"),
])
def test_dst_days(window, now, opens_at, closes_at):
    state = window_state([window], now=now)
    assert (state["open"], state["opens_at"], state["closes_at"]) == (False, opens_at, closes_at)


def test_repeated_hour_does_not_reopen():
    window = [win(["sun"], "02:00", "02:30")]
    # 02:15 CET, the second 02:15 of the night: closed; the window was at 02:00-02:30 CEST.
    assert not window_state(window, now="2026-10-25T01:15:00Z")["open"]
    assert window_state(window, now="2026-10-25T00:15:00Z")["open"]


@pytest.mark.parametrize("windows, now, match", [
    ("Sat 02:00-04:00", None, "expected a list"),
    (["Sat 02:00-04:00"], None, "is not a dict"),
    ([win(["sat", "caturday"], "02:00", "04:00")], None, "mon..sun"),
    ([win([], "02:00", "04:00")], None, "mon..sun"),
    ([win(["sat"], "2:00", "04:00")], None, "start as HH:MM"),
    ([win(["sat"], "02:00", "24:00")], None, "end as HH:MM"),
    ([win(["sat"], "02:00", "04:00", "Mars/Olympus")], None, "unknown timezone"),
    ([SAT], "2026-11-28T02:00:00", "needs a timezone offset"),
    ([SAT], "Saturday", "not an ISO 8601 time"),
])
def test_bad_input(windows, now, match):
    with pytest.raises(AnsibleFilterError, match=match):
        window_state(windows, now=now)


def test_default_now_is_the_clock():
    state = window_state([win(list(DAYS), "00:00", "00:00", "UTC")])
    assert state["open"]
    assert datetime.fromisoformat(state["closes_at"].replace("Z", "+00:00")) > datetime.now(UTC)


# Property: the filter agrees with a brute-force walk of the site's clock, minute by minute.
# The walk reads each minute's wall-clock time and opens an occurrence the first time the clock
# reads its start or later, closes it the first time after that it reads its end or later.
ZONES = ["Europe/Berlin", "America/New_York", "UTC", "Australia/Lord_Howe", "Asia/Kolkata"]
# Around the 2026 changes, and anywhere in the year.
CHANGES = [datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 10, 25, tzinfo=UTC), datetime(2026, 3, 8, tzinfo=UTC),
           datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 4, 5, tzinfo=UTC), datetime(2026, 10, 4, tzinfo=UTC)]


def _clock(draw_minutes):
    return f"{draw_minutes // 60:02d}:{draw_minutes % 60:02d}"


@st.composite
def cases(draw):
    zone = draw(st.sampled_from(ZONES))
    windows = []
    for _window in range(draw(st.integers(1, 3))):
        days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True))
        # Quarter hours mostly (they hit the DST edges), any minute sometimes.
        minute = st.one_of(st.integers(0, 95).map(lambda q: q * 15), st.integers(0, 1439))
        windows.append(win(days, _clock(draw(minute)), _clock(draw(minute)), zone))
    base = draw(st.one_of(st.sampled_from(CHANGES), st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 1)).map(lambda d: d.replace(tzinfo=UTC))))
    now = base.replace(second=0, microsecond=0) + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))
    return zone, windows, now


def _walk(zone, windows, now):
    """Intervals (opens, closes) in UTC of every occurrence near now, by walking minutes."""
    tz = ZoneInfo(zone)
    first = now - timedelta(days=3)
    minutes = [first + timedelta(minutes=i) for i in range(13 * 1440)]
    walls = [m.astimezone(tz).replace(tzinfo=None) for m in minutes]
    intervals = []
    for window in windows:
        start = datetime.strptime(window["start"], "%H:%M").time()
        end = datetime.strptime(window["end"], "%H:%M").time()
        day = walls[0].date()
        while day <= walls[-1].date():
            if DAYS[day.weekday()] in window["days"]:
                s_wall = datetime.combine(day, start)
                e_wall = datetime.combine(day if end > start else day + timedelta(days=1), end)
                s = next((i for i, w in enumerate(walls) if w >= s_wall), None)
                e = next((i for i in range(s, len(walls)) if walls[i] >= e_wall), None) if s is not None else None
                if s is not None and e is not None and e > s and s > 0:
                    intervals.append((minutes[s], minutes[e]))
            day += timedelta(days=1)
    return intervals


def _open(intervals, instant):
    return any(s <= instant < e for s, e in intervals)


@settings(max_examples=60, deadline=None)
@given(cases())
def test_agrees_with_a_minute_walk(case):
    zone, windows, now = case
    intervals = _walk(zone, windows, now)
    state = window_state(windows, now=now.isoformat())
    assert state["open"] == _open(intervals, now)
    opens = datetime.fromisoformat(state["opens_at"].replace("Z", "+00:00"))
    closes = datetime.fromisoformat(state["closes_at"].replace("Z", "+00:00"))
    assert (opens, closes) in intervals
    if state["open"]:
        assert opens <= now < closes
    else:
        # In the future, actually opens then, and nothing opens before it.
        assert now < opens and _open(intervals, opens) and not _open(intervals, opens - timedelta(minutes=1))
        assert not any(now < s < opens for s, _e in intervals)
