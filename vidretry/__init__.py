"""vidretry: a Postgres-backed job queue for video generation that answers every Telegram user."""

__version__ = "0.1.0"
