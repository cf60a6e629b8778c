"""What the bot sends is parsed from HTML once per distinct text (a broadcast repeats it)."""

from telethon import types

from vidretry.telegram.bot.messages import _parsed_html


def test_html_becomes_text_and_entities_once() -> None:
    text, entities = _parsed_html("Видео для <b>Маша</b> готово")
    assert text == "Видео для Маша готово"
    assert entities == [types.MessageEntityBold(offset=10, length=4)]
    assert _parsed_html("Видео для <b>Маша</b> готово")[1] is entities  # cached


def test_a_mention_is_left_to_telethon_which_resolves_it_per_send() -> None:
    html_text = 'Hi <a href="tg://user?id=5">you</a>'
    assert _parsed_html(html_text) == (html_text, None)
