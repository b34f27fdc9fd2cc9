"""activities.context.beat_interval: a Heartbeater beats three times per heartbeat timeout, never less often than
every 5 s; at the tests' 5 s timeout it beat once per timeout, which raced it."""

from __future__ import annotations

from datetime import timedelta

from activities.context import beat_interval


def test_a_heartbeater_beats_three_times_per_timeout_and_at_least_every_five_seconds():
    assert beat_interval(timedelta(seconds=5)) < 5 / 2
    assert beat_interval(timedelta(seconds=6)) == 2.0
    assert beat_interval(timedelta(seconds=60)) == 5.0
    assert beat_interval(None) == 5.0
