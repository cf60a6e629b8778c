import re
import string
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from vidretry.config import Config, ConfigError, load_config, parse_config
from vidretry.texts import ENGLISH, PLACEHOLDERS, MessagesConfig, message_keys

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    config = parse_config({})
    assert config.worker.max_attempts == 3
    assert config.worker.concurrency == 2
    assert config.notifier.rate_per_second == 25
    assert config.database.url is None


def test_values_are_typed() -> None:
    config = parse_config(
        {
            "worker": {"lease_seconds": 5, "heartbeat_seconds": 1, "command": ["sh", "-c", "x"]},
            "telegram": {"admins": [1, 2], "session": "~/bot.session"},
        }
    )
    assert config.worker.lease_seconds == 5.0
    assert isinstance(config.worker.lease_seconds, float)
    assert config.worker.command == ("sh", "-c", "x")
    assert config.telegram.admins == (1, 2)
    assert config.telegram.session == Path("~/bot.session").expanduser()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"worker": {"concurency": 2}}, r"unknown config key \[worker\] concurency"),
        ({"wroker": {}}, r"unknown config section \[wroker\]"),
        ({"worker": {"concurrency": "4"}}, r"\[worker\] concurrency must be an integer, not str"),
        ({"worker": {"concurrency": True}}, r"\[worker\] concurrency must be an integer"),
        ({"worker": {"concurrency": 0}}, r"\[worker\] concurrency must be at least 1, got 0"),
        ({"worker": {"max_attempts": 1000}}, r"\[worker\] max_attempts must be at most 100"),
        ({"worker": {"backoff_base_seconds": -1}}, r"backoff_base_seconds must be at least 0"),
        ({"worker": {"command": "sh -c x"}}, r"\[worker\] command must be a list of a string"),
        ({"worker": {"command": ["sh", 3]}}, r"\[worker\] command\[1\] must be a string"),
        ({"worker": {"handler": "shell"}}, r"\[worker\] handler must be"),
        ({"worker": {"lease_seconds": 5}}, r"heartbeat_seconds must be shorter"),
        (
            {"notifier": {"rate_per_second": 100}},
            r"\[notifier\] rate_per_second above 30 needs \[notifier\] paid_broadcast = true",
        ),
        (
            {"notifier": {"rate_per_second": 1001, "paid_broadcast": True}},
            r"\[notifier\] rate_per_second must be at most 1000",
        ),
        ({"telegram": {"admins": [1, "x"]}}, r"\[telegram\] admins\[1\] must be an integer"),
        ({"telegram": {"api_id": "123"}}, r"\[telegram\] api_id must be an integer"),
        ({"database": "postgres://"}, r"\[database\] must be a table"),
        (
            {"generator_urls": {"hosts": ["cdn.example.com", "https://x.example"]}},
            r"\[generator_urls\] hosts\[1\] must be a host name",
        ),
        (
            {"generator_urls": {"allow_networks": ["10.0.0.0/33"]}},
            r"\[generator_urls\] allow_networks\[0\] must be an address or a network",
        ),
        ({"generator_urls": {"allow_http": "yes"}}, r"\[generator_urls\] allow_http must be"),
    ],
)
def test_errors_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[worker\nconcurrency = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})


def test_environment_picks_the_file_and_overrides_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\nurl = "postgresql://file"\n[telegram]\nbot_token = "file"\n')
    config = load_config(
        env={
            "VIDRETRY_CONFIG": str(path),
            "VIDRETRY_DATABASE_URL": "postgresql://env",
            "VIDRETRY_TELEGRAM_BOT_TOKEN": "123:env",
            "VIDRETRY_TELEGRAM_API_HASH": "hash",
        }
    )
    assert config.source == path
    assert config.database.url == "postgresql://env"
    assert config.telegram.bot_token == "123:env"
    assert config.telegram.api_hash == "hash"


def test_secrets_stay_out_of_repr() -> None:
    config = parse_config(
        {"database": {"url": "postgresql://u:hunter2@h/db"}, "telegram": {"bot_token": "1:SECRET"}}
    )
    assert "hunter2" not in repr(config)
    assert "SECRET" not in repr(config)


def test_example_config_is_valid_and_documents_every_key() -> None:
    text = (ROOT / "config.example.toml").read_text()
    parse_config(tomllib.loads(text))
    defaults = Config()
    for section in fields(Config):
        if section.name == "source":
            continue
        assert f"[{section.name}]" in text
        for key in fields(getattr(defaults, section.name)):
            if key.name == "languages":  # [messages.<code>] tables, not a key
                assert re.search(r"^#? ?\[messages\.en\]", text, re.M)
                continue
            assert re.search(rf"^#? ?{key.name} =", text, re.M), f"[{section.name}] {key.name}"


def test_paid_broadcast_allows_telegram_s_paid_limit() -> None:
    assert Config().notifier.paid_broadcast is False
    config = parse_config({"notifier": {"rate_per_second": 1000, "paid_broadcast": True}})
    assert config.notifier.rate_per_second == 1000
    parse_config({"notifier": {"rate_per_second": 30}})  # the free limit needs no flag


def test_a_notifier_heartbeat_must_leave_the_lease_two_missed_beats() -> None:
    # A lease that one late beat could lose lets a slow upload be taken over and sent twice.
    parse_config({"notifier": {"lease_seconds": 30, "heartbeat_seconds": 10}})
    with pytest.raises(ConfigError) as info:
        parse_config({"notifier": {"lease_seconds": 30, "heartbeat_seconds": 11}})
    assert str(info.value) == (
        "[notifier] heartbeat_seconds must be at most a third of [notifier] lease_seconds "
        "(got 11 and 30)"
    )


def test_a_retired_key_says_what_replaced_it() -> None:
    with pytest.raises(ConfigError, match=r"^\[notifier\] max_attempts is no longer used: .*"
                       r"give_up_after_seconds"):  # fmt: skip
        parse_config({"notifier": {"max_attempts": 5}})


def test_relative_paths_are_resolved_against_the_config_file(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    path = etc / "vidretry.toml"
    path.write_text(
        '[database]\nembedded_dir = "pg"\n[worker]\noutput_dir = "videos"\n'
        '[telegram]\nsession = "/var/lib/vidretry/bot.session"\n'
    )
    config = load_config(path, env={})
    assert config.database.embedded_dir == etc / "pg"
    assert config.worker.output_dir == etc / "videos"
    assert config.telegram.session == Path("/var/lib/vidretry/bot.session")  # absolute: kept


def test_without_a_file_the_defaults_are_absolute_too(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # no vidretry.toml here
    config = load_config(env={})
    assert config.worker.output_dir == tmp_path / "output"
    assert config.telegram.session == tmp_path / "vidretry-bot.session"


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_english_is_built_in_complete_with_the_same_placeholders() -> None:
    russian, english = MessagesConfig(), MessagesConfig().in_language("en")
    assert set(ENGLISH) == set(message_keys())
    for key in message_keys():
        assert getattr(english, key) == ENGLISH[key]
        allowed = PLACEHOLDERS.get(key, ("name",))
        for template in (getattr(russian, key), ENGLISH[key]):
            template.format(**dict.fromkeys(allowed, "x"))  # only the allowed ones
        assert placeholders(ENGLISH[key]) == placeholders(getattr(russian, key)), key


def test_a_language_falls_back_to_its_base_then_to_the_default() -> None:
    messages = parse_config(
        {
            "messages": {
                "retry_button": "R",
                "pt": {"retry_button": "🔄 Tentar de novo", "failed": "Ops, {name}!"},
                "pt-br": {"failed": "Eita, {name}!"},
                "en": {"retry_button": "Again"},
            }
        }
    ).messages
    brazil = messages.in_language("pt-BR")
    assert (brazil.failed, brazil.retry_button) == ("Eita, {name}!", "🔄 Tentar de novo")
    portugal = messages.in_language("pt_PT")
    assert (portugal.failed, portugal.retry_button) == ("Ops, {name}!", "🔄 Tentar de novo")
    assert portugal.requested == messages.requested  # not translated: the default's
    english = messages.in_language("en-us")
    assert (english.retry_button, english.failed) == ("Again", ENGLISH["failed"])
    for code in (None, "", "de", "x"):
        assert messages.in_language(code) is messages
    assert messages.retry_button == "R"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"en": {"failed": "No name"}},
         "[messages.en] failed must use the same placeholders as [messages] failed: {name}"),
        ({"de": {"retry_limit_alert": "{user} {name} {asset}"}},
         "[messages.de] retry_limit_alert must use the same placeholders as [messages] "
         "retry_limit_alert: {asset}, {error}, {name}, {user}"),
        ({"de": {"failed": "{nme}"}}, "[messages.de] failed may use only the placeholders {name}"),
        ({"de": {"faild": "x"}}, "unknown config key [messages.de] faild"),
        ({"German": {"failed": "{name}"}}, "[messages.German] is not a language code"),
        ({"de": {"failed": 3}}, "[messages.de] failed must be a string, not int"),
        ({"languages": "x"}, "unknown config key [messages] languages"),
    ],
)  # fmt: skip
def test_language_tables_are_checked(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"messages": table})
    assert str(caught.value).startswith(message)
