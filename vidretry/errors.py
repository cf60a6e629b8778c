"""The one exception root, and the exit code each kind of error maps to on the command line."""


class VidretryError(Exception):
    """Base of every error vidretry raises on purpose; its message is one line for a human."""

    exit_code = 1
    # The SQLSTATE of the SQL interface's error this one translates (VR001, VR012, ...).
    sqlstate: str | None = None


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


class RateLimited(VidretryError):
    """The generator says "slow down" (an API's HTTP 429, a GPU pool that is full): not a
    failure. Raise it from a Python handler (``RateLimited(retry_after=30)``): the job waits
    with its attempt given back, and every worker holds off new starts for ``retry_after``
    seconds (None: the backoff the attempt would have had)."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        if retry_after is not None and not retry_after >= 0:  # also refuses NaN
            raise ValueError(f"retry_after must be a number of seconds >= 0, got {retry_after}")
        super().__init__(message or "the generator asked to slow down")
        self.retry_after = retry_after
