"""The one exception root, and the exit code each kind of error maps to on the command line."""


class VidretryError(Exception):
    """Base of every error vidretry raises on purpose; its message is one line for a human."""

    exit_code = 1


class RefusedError(VidretryError):
    """The request was understood and refused (retry of an asset that is not failed, ...)."""

    exit_code = 1


class ConfigError(VidretryError):
    """Bad configuration or usage; the message names the offending key or argument."""

    exit_code = 2


class SchemaError(VidretryError):
    """The database schema does not match this version of vidretry."""

    exit_code = 2


class DatabaseUnavailable(VidretryError):
    """The database cannot be reached."""

    exit_code = 3


class FatalError(VidretryError):
    """A long-running process cannot carry on (its loop stops and the process exits)."""


class TelegramUnavailable(FatalError):
    """Telegram refused the bot (bad or revoked token) or cannot be reached."""

    exit_code = 4


class HandlerError(VidretryError):
    """A generation attempt failed; the job is retried while attempts remain."""


class PermanentError(HandlerError):
    """A generation attempt failed in a way retrying cannot fix: fail the job now."""
