import random

import pytest

from vidretry.backoff import exponential, jittered


def test_doubles_from_the_base() -> None:
    assert [exponential(n, 10, 3600) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]


def test_is_capped() -> None:
    assert exponential(30, 10, 3600) == 3600
    assert exponential(10_000, 10, 3600) == 3600  # no float overflow for absurd attempts


def test_zero_base_means_no_wait() -> None:
    assert exponential(5, 0, 3600) == 0


def test_attempts_are_one_based() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        exponential(0, 10, 3600)


def test_jitter_stays_within_its_spread() -> None:
    rng = random.Random(7)
    samples = [jittered(100, rng, spread=0.25) for _ in range(1000)]
    assert min(samples) >= 75
    assert max(samples) <= 125
    assert max(samples) - min(samples) > 40  # it does spread


def test_no_spread_is_exact() -> None:
    assert jittered(42, random.Random(1), spread=0) == 42


def test_jitter_of_zero_is_zero() -> None:
    assert jittered(0, random.Random(1)) == 0
