"""Loading [telegram] plugins: a typo or a module with no hook is a one-line config error."""

from __future__ import annotations

import pytest

from vidretry.errors import ConfigError
from vidretry.telegram.plugins import Priorities, PriorityRequest, load_plugins, registering


def test_a_plugin_has_register_or_request_priority() -> None:
    echo, paying = load_plugins(
        ["tests.telegram.plugins.echo_plugin", "tests.telegram.plugins.paying_users"]
    )
    assert registering([echo, paying]) == [echo]  # only it adds Telethon handlers
    with pytest.raises(ConfigError, match=r"^\[telegram\] plugins\[0\]: 'tests.support' has "
                       r"neither register\(client\) nor request_priority\(request\)$"):  # fmt: skip
        load_plugins(["tests.support"])
    with pytest.raises(ConfigError, match=r"plugins\[1\]: cannot import 'no.such.module'"):
        load_plugins(["tests.telegram.plugins.echo_plugin", "no.such.module"])


async def test_the_highest_priority_wins_and_a_broken_hook_counts_as_none() -> None:
    loaded = load_plugins(
        ["tests.telegram.plugins.broken_priority", "tests.telegram.plugins.paying_users"]
    )
    priorities = Priorities(loaded)
    assert await priorities.of(PriorityRequest(7, "x", is_admin=False)) == 5
    assert await priorities.of(PriorityRequest(8, "x", is_admin=False)) == 5  # 42 ignored
    assert await priorities.of(PriorityRequest(1, "x", is_admin=False)) == 0  # KeyError
    assert await priorities.of(PriorityRequest(1, "x", is_admin=True)) == 9
    assert await Priorities([]).of(PriorityRequest(1, "x", is_admin=True)) == 0
