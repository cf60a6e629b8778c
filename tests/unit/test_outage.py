"""When the notifier decides that Telegram is failing everybody, and when it probes."""

import itertools
import random

from vidretry.config import NotifierConfig
from vidretry.telegram.outage import OUTAGE_AFTER_CHATS, Outage, recovery_bound_seconds

PROBE_MAX_SECONDS = NotifierConfig().outage_probe_max_seconds


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def outage() -> tuple[Outage, Ticks]:
    ticks = Ticks()
    return Outage(random.Random(1), ticks, probe_max_seconds=PROBE_MAX_SECONDS), ticks


def test_a_lone_server_error_is_not_an_outage_but_failures_in_three_chats_are() -> None:
    state, _ = outage()
    state.failed(1, chat_id=10, reason="RpcCallFailError")
    state.failed(2, chat_id=10, reason="RpcCallFailError")  # the same chat again
    assert not state.down
    assert state.claim_limit(50) == 50
    state.failed(3, chat_id=11, reason="RpcCallFailError")
    assert not state.down
    state.failed(4, chat_id=12, reason="RpcCallFailError")
    assert OUTAGE_AFTER_CHATS == 3
    assert state.down


def test_an_answer_in_between_starts_the_count_again() -> None:
    state, _ = outage()
    state.failed(1, chat_id=10, reason="x")
    state.failed(2, chat_id=11, reason="x")
    state.answered()
    state.failed(3, chat_id=12, reason="x")
    assert not state.down


def test_a_lost_connection_is_an_outage_at_once_and_only_the_probe_is_claimed() -> None:
    state, ticks = outage()
    state.failed(1, chat_id=10, reason="ConnectionError", connection_lost=True)
    assert state.down
    assert state.claim_limit(50) == 0  # the first probe is not due yet
    ticks.now += PROBE_MAX_SECONDS * 1.25
    assert state.claim_limit(50) == 1
    state.probing(7)
    assert state.claim_limit(50) == 0  # one probe at a time
    state.failed(8, chat_id=11, reason="in flight before")  # not the probe: no change
    assert state.probe_id == 7


def test_probes_back_off_to_a_cap_and_an_answer_ends_the_outage() -> None:
    state, ticks = outage()
    state.failed(1, chat_id=1, reason="x", connection_lost=True)
    gaps = []
    for probe in range(2, 10):
        while state.claim_limit(1) == 0:
            ticks.now += 0.05
        gaps.append(state.next_probe_at)
        state.probing(probe)
        state.failed(probe, chat_id=1, reason="still down")
    waits = [b - a for a, b in itertools.pairwise(gaps)]
    assert waits[0] < waits[2]  # growing
    assert max(waits) <= PROBE_MAX_SECONDS * 1.25 + 0.05  # capped (jitter ±25 %)
    state.answered()
    assert not state.down
    assert state.claim_limit(50) == 50


def test_a_probe_that_reached_no_verdict_does_not_block_the_next() -> None:
    state, ticks = outage()
    state.failed(1, chat_id=1, reason="x", connection_lost=True)
    ticks.now += 60
    assert state.claim_limit(1) == 1
    state.probing(5)
    state.settled(5)  # e.g. its chat was busy, or it was cancelled
    assert state.claim_limit(1) == 1


def test_the_connection_coming_back_makes_the_probe_due_at_once() -> None:
    state, _ = outage()
    state.failed(1, chat_id=1, reason="x", connection_lost=True)
    assert state.claim_limit(1) == 0
    state.probe_now()
    assert state.claim_limit(1) == 1


def test_with_the_defaults_what_waited_goes_out_within_30_s_of_telegrams_recovery() -> None:
    # The promise the README makes. The outage tests (tests/telegram) run it with small
    # settings and check the measured recovery against the same bound.
    assert PROBE_MAX_SECONDS == 10.0
    assert recovery_bound_seconds(NotifierConfig()) <= 30


def test_the_probe_cap_is_a_setting_and_a_small_one_keeps_probes_close() -> None:
    ticks = Ticks()
    state = Outage(random.Random(1), ticks, probe_max_seconds=0.5)
    state.failed(1, chat_id=1, reason="x", connection_lost=True)
    for probe in range(2, 12):
        before = ticks.now
        while state.claim_limit(1) == 0:
            ticks.now += 0.01
        assert ticks.now - before <= 0.5 * 1.25 + 0.01
        state.probing(probe)
        state.failed(probe, chat_id=1, reason="still down")
