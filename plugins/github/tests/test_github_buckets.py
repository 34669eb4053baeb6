"""The buckets and days of the GitHub analytics (binary searches of the window's local
bucket starts and midnights) equal PostgreSQL's own zone arithmetic (``date_trunc`` in the
zone, ``AT TIME ZONE``'s date) and the commit heatmap's integer hour of the week equals
the shifted timestamp's weekday and hour, over instants spread across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pulse_github.config import GithubConfig
from pulse_github.params import Scope
from pulse_github.queries import bucket_sql, day_sql, local_hour_of_week_sql
from sqlalchemy import text

from pulse_engine.app import PulseEngine

#: Zones with DST changes at midnight (Santiago, Beirut), by half an hour (Lord Howe), at
#: a quarter-hour offset (Chatham), and without DST.
ZONES = ["UTC", "America/New_York", "America/Santiago", "Asia/Beirut", "Australia/Lord_Howe",
         "Pacific/Chatham", "Asia/Kolkata"]
#: A 13-month window starting mid-day: every DST change of a year, and a clipped first bucket.
START, END = datetime(2023, 3, 1, 13, 7, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize("interval", ["day", "week", "month"])
async def test_buckets_and_days_equal_the_zone_arithmetic(engine: PulseEngine,
                                                          interval: str) -> None:
    for zone in ZONES:
        scope = Scope("00000000-0000-0000-0000-000000000001", START, END, zone, interval, (),
                      None, GithubConfig(), False)
        sql = f"""
WITH instants AS (
    SELECT CAST(:start AS timestamptz) + g * interval '37 minutes 11 seconds' AS t
    FROM generate_series(0, 16000) g
)
SELECT count(*) AS instants,
       count(*) FILTER (WHERE {bucket_sql(scope, 't')}
                        IS DISTINCT FROM date_trunc('{interval}', t, :tz)) AS other_bucket,
       count(DISTINCT {day_sql('t')}) AS days, count(DISTINCT (t AT TIME ZONE :tz)::date)
         AS zone_days,
       count(*) FILTER (WHERE {day_sql('t')} - {day_sql('CAST(:start AS timestamptz)')}
                        IS DISTINCT FROM (t AT TIME ZONE :tz)::date
                          - (CAST(:start AS timestamptz) AT TIME ZONE :tz)::date) AS other_day
FROM instants WHERE t < :end
"""
        async with engine.db.system_session() as session:
            row = (await session.execute(text(sql), scope.params())).one()
        assert row.instants > 15000
        assert (row.other_bucket, row.other_day, row.days) == (0, 0, row.zone_days), zone


async def test_the_hour_of_the_week_equals_the_shifted_weekday_and_hour(
        engine: PulseEngine) -> None:
    sql = f"""
WITH commits AS (
    SELECT timestamptz '1970-01-01' + g * interval '9 hours 17 minutes 13 seconds' AS t,
           (g * 37) % 1561 - 720 AS author_tz_offset
    FROM generate_series(0, 200000) g
), shifted AS (
    SELECT {local_hour_of_week_sql('t', 'author_tz_offset')} AS hour_of_week,
           (t AT TIME ZONE 'UTC') + make_interval(mins => author_tz_offset) AS local
    FROM commits
)
SELECT count(*) AS commits,
       count(*) FILTER (WHERE hour_of_week <> (extract(isodow FROM local)::int - 1) * 24
                                               + extract(hour FROM local)::int) AS other
FROM shifted
"""
    async with engine.db.system_session() as session:
        row = (await session.execute(text(sql))).one()
    assert (row.commits, row.other) == (200001, 0)
