import pytest
from hypothesis import given
from hypothesis import strategies as st

from vidretry.telegram.callback_data import (
    ButtonPress,
    cancel_data,
    parse_callback_data,
    retry_data,
)
from vidretry.telegram.pacing import WINDOW_SECONDS, Pacer, RateLimiter
from vidretry.texts import render


def test_callback_data_round_trips_and_fits_telegram() -> None:
    data = retry_data(2**63 - 1, 2**31 - 1)
    assert len(data.encode()) <= 64
    assert parse_callback_data(data.encode()) == ButtonPress(2**63 - 1, 2**31 - 1)
    assert retry_data(42, 3) == "retry_video:42:3"


def test_buttons_already_in_chats_keep_their_meaning() -> None:
    """The retry round was called "generation" when 0.19.0 made the buttons users still have:
    the name changed, the bytes did not, so those buttons decode as they did."""
    assert (retry_data(42, 3), cancel_data(42, 3)) == ("retry_video:42:3", "cancel_video:42:3")
    assert parse_callback_data(b"retry_video:42:3") == ButtonPress(42, 3)
    assert parse_callback_data(b"cancel_video:42:3") == ButtonPress(42, 3, cancel=True)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"retry_video:42:3", ButtonPress(42, 3)),
        (b"retry_video:42", ButtonPress(42, None)),
        (b"retry_video_42", ButtonPress(42, None)),
        (b"retry_video:0:0", None),
        (b"retry_video:42:", None),
        (b"retry_video:+42", None),
        (b"retry_video: 42", None),
        (b"retry_video:\xd9\xa4\xd9\xa2", None),  # Arabic-Indic digits are digits to str.isdigit
        (b"retry_video:9223372036854775808", None),  # one past bigint
        (b"retry_video:1:2147483648", None),
        (b"retry_video_42:1", None),
        (b"", None),
        (b"retry_video:1" + b"0" * 64, None),
    ],
)
def test_parse_callback_data(data: bytes, expected: ButtonPress | None) -> None:
    assert parse_callback_data(data) == expected


def test_render_escapes_the_name_only() -> None:
    assert render("для <b>{name}</b>", "<i>x</i> & y") == "для <b>&lt;i&gt;x&lt;/i&gt; &amp; y</b>"


def test_rate_limiter_spaces_sends_evenly() -> None:
    limiter = RateLimiter(rate=25, chat_interval=1)
    starts = [limiter.reserve(chat, 0.0, max_wait=60) or 0.0 for chat in range(100)]
    assert starts == pytest.approx([i / 25 for i in range(100)])
    # No one-second window holds more than the limit.
    assert max(sum(1 for s in starts if t <= s < t + 1 - 1e-9) for t in starts) == 25


def test_rate_limiter_keeps_one_chat_at_one_per_second() -> None:
    limiter = RateLimiter(rate=25, chat_interval=1)
    waits = [limiter.reserve(7, 0.0, max_wait=60) for _ in range(5)]
    assert waits == pytest.approx([0, 1, 2, 3, 4])
    assert limiter.reserve(8, 0.0, max_wait=60) == pytest.approx(0.04)  # not held up by chat 7


def test_rate_limiter_refuses_to_hold_a_busy_chat_for_long() -> None:
    limiter = RateLimiter(rate=25, chat_interval=1)
    for _ in range(10):
        limiter.reserve(7, 0.0, max_wait=60)
    assert limiter.reserve(7, 0.0, max_wait=5) is None
    assert limiter.chat_wait(7, 0.0) == pytest.approx(10)


def test_flood_wait_pauses_everything() -> None:
    limiter = RateLimiter(rate=25, chat_interval=1)
    limiter.pause(until=30.0)
    assert limiter.reserve(1, 10.0, max_wait=60) == pytest.approx(20)
    assert limiter.paused_for(10.0) == pytest.approx(20)


@given(st.binary(max_size=64))
def test_any_bytes_parse_to_nothing_or_a_valid_button(data: bytes) -> None:
    press = parse_callback_data(data)
    if press is not None:
        assert 1 <= press.asset_id <= 2**63 - 1
        assert press.retry_round is None or 0 <= press.retry_round <= 2**31 - 1
        assert data.startswith(b"retry_video")


@given(st.integers(1, 2**63 - 1), st.integers(0, 2**31 - 1))
def test_every_button_we_make_parses_back(asset_id: int, retry_round: int) -> None:
    assert parse_callback_data(retry_data(asset_id, retry_round).encode()) == ButtonPress(
        asset_id, retry_round
    )


def test_an_idle_limiter_lets_a_send_go_at_once() -> None:
    limiter = RateLimiter(rate=25, chat_interval=1)
    assert limiter.reserve(1, 100.013, max_wait=60) == 0
    assert limiter.reserve(2, 100.013, max_wait=60) == pytest.approx(0.04)
    assert limiter.reserve(3, 100.5, max_wait=60) == 0


# -- a new leader's pacer -------------------------------------------------------------------


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def test_a_new_leader_sends_at_once_what_the_last_second_left() -> None:
    """The leader before sent 10 messages in the last second (to chats 1-10, the last 0.1 s
    ago): the new leader may send 15 more now, to any other chat, and to chat 10 when its
    interval has passed since that send: no pause, no gap."""
    clock = Clock(100.0)
    pacer = Pacer(25, 1.0, monotonic=clock)
    pacer.take_over([(chat, 1.1 - chat / 10) for chat in range(1, 11)])
    assert pacer.paused_for() == 0
    assert pacer.window_wait() == 0
    assert pacer.reserve(11, max_wait=60) == 0
    assert pacer.reserve(10, max_wait=60) == pytest.approx(0.9)


def test_a_new_leader_waits_for_the_window_the_last_leader_filled() -> None:
    """25 messages in the last second, every 40 ms, the last just now: the next may go when
    the oldest leaves the window (as the pacer keeps it), not before and not a second later."""
    clock = Clock(100.0)
    pacer = Pacer(25, 1.0, monotonic=clock)
    pacer.take_over([(chat, 0.96 - chat * 0.04) for chat in range(25)])
    assert pacer.window_wait() == pytest.approx(WINDOW_SECONDS - 0.96)
    clock.at += WINDOW_SECONDS - 0.96
    assert pacer.window_wait() == 0


def test_a_new_leader_that_cannot_read_the_outbox_waits_a_whole_window() -> None:
    pacer = Pacer(25, 1.0, monotonic=Clock(100.0))
    pacer.take_over(None)
    assert pacer.paused_for() == pytest.approx(WINDOW_SECONDS)
    assert pacer.reserve(1, max_wait=60) == pytest.approx(WINDOW_SECONDS)
