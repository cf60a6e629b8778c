"""The database: everything that talks to PostgreSQL as such, and nothing about jobs,
videos or Telegram. (Where finished videos are kept, "the store", is ``vidretry.results``.)

Owns connections and the named statements of ``sql/`` (``connection``, ``sqlfiles``), the migrator
and the schema check (``schema``), how a step runs without stopping the queue (``online``),
which releases run (``processes``), a daemon's pool opened after the schema check (``pool``),
LISTEN/NOTIFY (``listen``), connections that notice a dead link (``deadlink``), surviving an
outage of the database (``transient``), the private embedded server (``embedded``) and
passwords kept out of messages (``redact``).

May import: the shared vocabulary at the top of ``vidretry`` (``errors``, ``config``,
``models``, ``clock``, ``backoff``, ``names``, ``eventloop``). Nothing of ``queue``,
``telegram``, ``app`` or ``cli`` (``.importlinter`` checks it).
"""
