"""The bot's texts: every message a Telegram user sees, in every language (``[messages]``).

The default language's texts are ``MessagesConfig``'s defaults (Russian: the first users
were); English is built in (``ENGLISH``); each ``[messages.<code>]`` table adds or overrides
a language. Every text may use only its own placeholders (``PLACEHOLDERS``), checked when the
configuration is loaded (vidretry.config).
"""

from __future__ import annotations

import dataclasses
import html
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from vidretry.errors import ConfigError


@dataclass(frozen=True)
class MessagesConfig:
    """Every text a Telegram user sees, in the default language (Russian: the first users
    were). ``{name}`` is HTML-escaped before it is inserted. ``languages`` holds the complete
    texts of every other language (English built in, and each ``[messages.<code>]`` table):
    ``in_language`` picks a recipient's."""

    failed: str = (
        "Упс! Что-то пошло не так при создании видео для <b>{name}</b>. 😔\n\n"
        "Не переживайте, вы можете попробовать еще раз!"
    )
    retry_button: str = "🔄 Попробовать еще раз"
    ready_caption: str = "Ваше видео для <b>{name}</b> готово! 🎬"
    retried: str = "Запустили заново! 🔄"
    retried_message: str = (
        "Мы снова создаём видео для <b>{name}</b>. Пришлём его, как только оно будет готово."
    )
    already_queued: str = "Видео уже создаётся — подождите немного. ⏳"
    already_available: str = "Видео уже готово — отправляем его ещё раз. 🎬"
    stale: str = "Кто-то уже перезапустил это видео. ⏳"
    not_found: str = "Это видео не найдено."
    not_allowed: str = "Эта кнопка не для вас."
    bad_button: str = "Эта кнопка больше не работает."
    try_later: str = "Не получилось — попробуйте чуть позже."
    start: str = (
        "Привет! Я делаю видео по имени. Напишите /video и имя — например, /video Маша — "
        "и я пришлю готовое видео сюда. Если что-то пойдёт не так, я напишу и предложу "
        "попробовать ещё раз. /my — ваши видео, /help — подсказка."
    )
    help: str = (
        "<b>Что я умею</b>\n"
        "/video <i>имя</i> — заказать видео, например /video Маша\n"
        "/my — ваши видео и что с ними\n"
        "/cancel — отменить заказ\n"
        "/help — эта подсказка"
    )
    requested: str = "Принято! Видео для <b>{name}</b> скоро будет готово — я пришлю его сюда."
    # Added to the acceptance and to /my for a request still in line.
    place_in_line: str = "Место в очереди: {place}."
    expected_wait: str = "Ждать — около {minutes} мин."
    ask_name: str = "Напишите имя после команды, например: /video Маша"
    bad_name: str = (
        "Такое имя не подойдёт: оно слишком длинное или в нём есть служебные символы. "
        "Попробуйте короче и обычными буквами."
    )
    too_many_open: str = (
        "У вас уже несколько видео в работе — дождитесь их, пожалуйста, и закажите следующее."
    )
    slow_down: str = "Слишком много запросов подряд — подождите минутку, пожалуйста."
    retry_limit: str = (
        "Видео для <b>{name}</b> сегодня уже несколько раз не получилось. "
        "Я сообщил администратору — он разберётся."
    )
    retry_limit_alert: str = (
        "⚠️ Пользователь {user} исчерпал перезапуски на сегодня: видео <b>{name}</b> "
        "(#{asset}) снова не получилось.\nПоследняя ошибка: {error}"
    )
    queue_paused: str = (
        "⏸ Очередь остановлена: генератор видео, похоже, не работает — несколько видео подряд "
        "не получились. Ждут: {waiting}.\nПоследняя ошибка: {error}\n"
        "Я проверяю генератор и продолжу сам, как только он заработает."
    )
    queue_resumed: str = "▶️ Генератор снова работает — очередь продолжена (пауза: {duration})."
    set_aside_alert: str = (
        "☠️ Уведомление #{notification} пользователю {user} (видео <b>{name}</b>) "
        "{crashes} раза подряд обрушило уведомитель — я отложил его, остальные идут дальше."
    )
    store_down: str = (
        "🗄 Хранилище видео недоступно с {since}: готовые видео ({waiting}) ждут у воркеров, "
        "попытки не тратятся. Проверьте [storage].\nОшибка: {error}"
    )
    retry_limit_short: str = "На сегодня перезапуски закончились — я сообщил администратору."
    my_header: str = "<b>Ваши видео</b>"
    my_empty: str = "Вы ещё ничего не заказывали. Напишите /video и имя."
    state_pending: str = "в очереди"
    state_running: str = "создаётся"
    state_available: str = "готово"
    state_failed: str = "не получилось"
    unknown_command: str = "Такой команды я не знаю. /help — что я умею."
    command_video: str = "Заказать видео: /video Маша"
    command_my: str = "Мои видео"
    command_help: str = "Что я умею"
    command_cancel: str = "Отменить заказ"
    cancel_button: str = "✖️ Отменить"
    cancelled: str = "Отменено."
    cancelled_message: str = (
        "Хорошо, видео для <b>{name}</b> не делаем. Передумаете — просто закажите снова."
    )
    cancel_too_late: str = "Отменять уже нечего."
    cancel_list_header: str = "<b>Что можно отменить</b> — нажмите на видео:"
    cancel_list_empty: str = "Отменять нечего: вы ничего не ждёте."
    cancelled_by_operator: str = (
        "Видео для <b>{name}</b> отменено администратором. Можно заказать его снова."
    )
    progress_started: str = "⏳ Создаём видео для <b>{name}</b>…"
    progress: str = "⏳ Создаём видео для <b>{name}</b> — {percent} % {bar}"
    state_cancelled: str = "отменено"
    languages: Mapping[str, MessagesConfig] = field(
        default_factory=lambda: resolve_languages(MessagesConfig(languages={}), {}),
        compare=False,
        repr=False,
    )

    def in_language(self, code: str | None) -> MessagesConfig:
        """The texts for a user whose Telegram speaks ``code`` (its ``lang_code``): that
        language ("pt-br"), else its base ("pt"), else the default."""
        if code:
            code = code.strip().lower().replace("_", "-")
            for candidate in (code, code.partition("-")[0]):
                if candidate in self.languages:
                    return self.languages[candidate]
        return self


def message_keys() -> tuple[str, ...]:
    """The [messages] keys: every text, not the ``languages`` that hold them again."""
    return tuple(f.name for f in dataclasses.fields(MessagesConfig) if f.name != "languages")


# English, built in: a user whose Telegram speaks English gets it with no configuration;
# [messages.en] overrides any of it. The same keys and placeholders as MessagesConfig.
ENGLISH: dict[str, str] = {
    "failed": (
        "Oops! Something went wrong while making the video for <b>{name}</b>. 😔\n\n"
        "Don't worry, you can try again!"
    ),
    "retry_button": "🔄 Try again",
    "ready_caption": "Your video for <b>{name}</b> is ready! 🎬",
    "retried": "Started again! 🔄",
    "retried_message": (
        "We are making the video for <b>{name}</b> again. We'll send it as soon as it is ready."
    ),
    "already_queued": "The video is already being made — please wait a little. ⏳",
    "already_available": "The video is ready — sending it again. 🎬",
    "stale": "Someone has already restarted this video. ⏳",
    "not_found": "This video was not found.",
    "not_allowed": "This button is not for you.",
    "bad_button": "This button no longer works.",
    "try_later": "That didn't work — please try again in a moment.",
    "start": (
        "Hi! I make videos for a name. Write /video and a name — for example, /video Masha — "
        "and I'll send the finished video here. If something goes wrong, I'll tell you and "
        "offer to try again. /my — your videos, /help — help."
    ),
    "help": (
        "<b>What I can do</b>\n"
        "/video <i>name</i> — order a video, for example /video Masha\n"
        "/my — your videos and how they are doing\n"
        "/cancel — cancel an order\n"
        "/help — this help"
    ),
    "requested": "Got it! The video for <b>{name}</b> will be ready soon — I'll send it here.",
    "place_in_line": "Place in line: {place}.",
    "expected_wait": "Expected wait: about {minutes} min.",
    "ask_name": "Write a name after the command, for example: /video Masha",
    "bad_name": (
        "That name won't do: it is too long or has special characters in it. "
        "Try something shorter, in ordinary letters."
    ),
    "too_many_open": (
        "You already have several videos in the works — please wait for them before you "
        "order the next one."
    ),
    "slow_down": "Too many requests in a row — please wait a minute.",
    "retry_limit": (
        "The video for <b>{name}</b> has failed several times today. "
        "I've told the administrator — they'll look into it."
    ),
    "retry_limit_alert": (
        "⚠️ User {user} has used up today's retries: the video <b>{name}</b> "
        "(#{asset}) failed again.\nLast error: {error}"
    ),
    "queue_paused": (
        "⏸ The queue is paused: the video generator seems to be down — several videos in a "
        "row failed. Waiting: {waiting}.\nLast error: {error}\n"
        "I'm checking the generator and will carry on by myself as soon as it works."
    ),
    "queue_resumed": "▶️ The generator works again — the queue carries on (paused: {duration}).",
    "set_aside_alert": (
        "☠️ Notification #{notification} to user {user} (video <b>{name}</b>) crashed the "
        "notifier {crashes} times in a row — I've set it aside, everything else carries on."
    ),
    "store_down": (
        "🗄 The video store has been unreachable since {since}: finished videos ({waiting}) "
        "wait in the workers, no attempt is spent. Please check [storage].\nError: {error}"
    ),
    "retry_limit_short": "No more retries today — I've told the administrator.",
    "my_header": "<b>Your videos</b>",
    "my_empty": "You haven't ordered anything yet. Write /video and a name.",
    "state_pending": "in the queue",
    "state_running": "being made",
    "state_available": "ready",
    "state_failed": "failed",
    "unknown_command": "I don't know that command. /help — what I can do.",
    "command_video": "Order a video: /video Masha",
    "command_my": "My videos",
    "command_help": "What I can do",
    "command_cancel": "Cancel an order",
    "cancel_button": "✖️ Cancel",
    "cancelled": "Cancelled.",
    "cancelled_message": (
        "All right, no video for <b>{name}</b>. Changed your mind? Just order it again."
    ),
    "cancel_too_late": "There is nothing left to cancel.",
    "cancel_list_header": "<b>What you can cancel</b> — tap a video:",
    "cancel_list_empty": "Nothing to cancel: you are not waiting for anything.",
    "cancelled_by_operator": (
        "The video for <b>{name}</b> was cancelled by the administrator. You can order it again."
    ),
    "progress_started": "⏳ Making the video for <b>{name}</b>…",
    "progress": "⏳ Making the video for <b>{name}</b> — {percent} % {bar}",
    "state_cancelled": "cancelled",
}
BUILT_IN_LANGUAGES: dict[str, dict[str, str]] = {"en": ENGLISH}
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")


def resolve_languages(
    default: MessagesConfig, tables: Mapping[str, Mapping[str, str]]
) -> dict[str, MessagesConfig]:
    """Every language's complete texts: the built-in ones and each configured table. A
    language's texts are the default's, then its base language's ("pt" for "pt-br"), then
    its own, each overriding the one before (a built-in language under its table)."""

    def layer(code: str) -> dict[str, str]:
        return {**BUILT_IN_LANGUAGES.get(code, {}), **tables.get(code, {})}

    resolved = {}
    for code in {*BUILT_IN_LANGUAGES, *tables}:
        base = code.partition("-")[0]
        texts = {**(layer(base) if base != code else {}), **layer(code)}
        resolved[code] = dataclasses.replace(default, **texts, languages={})
    return resolved


# The placeholders a message may use; every other message has {name} alone.
PLACEHOLDERS = {
    "retry_limit_alert": ("name", "user", "asset", "error"),
    "queue_paused": ("waiting", "error"),
    "queue_resumed": ("duration",),
    "set_aside_alert": ("name", "notification", "user", "crashes"),
    "store_down": ("since", "waiting", "error"),
    "place_in_line": ("place",),
    "expected_wait": ("minutes",),
    "progress": ("name", "percent", "bar"),
}


def placeholders(template: str) -> frozenset[str]:
    """The names a template's ``{...}`` fields use."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def check_texts(section: str, messages: MessagesConfig) -> None:
    """Every text of ``messages`` fills in with its own placeholders alone; else a
    ``ConfigError`` naming ``section`` and the key."""
    for key in message_keys():
        template = getattr(messages, key)
        allowed = PLACEHOLDERS.get(key, ("name",))
        try:
            template.format(**dict.fromkeys(allowed, "x"))
        except (KeyError, IndexError, ValueError):
            names = ", ".join(f"{{{name}}}" for name in allowed)
            raise ConfigError(
                f"{section} {key} may use only the placeholders {names} "
                "(write {{ and }} for literal braces)"
            ) from None


def render(template: str, name: str, **more: str) -> str:
    """A message template with the asset name (and ``more`` values) inserted, HTML-escaped: a
    name such as ``<b>x</b> & y`` is shown literally."""
    values = {key: html.escape(value, quote=False) for key, value in more.items()}
    return template.format(name=html.escape(name, quote=False), **values)
