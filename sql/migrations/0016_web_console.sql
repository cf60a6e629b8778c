-- vidretry schema, version 16: the operator's web console.
--
-- Who may use it: long random tokens, kept only as SHA-256 hashes (a random 256-bit secret
-- needs no slow hash, and a slow one would cost every API call), each with a name and a
-- role. Every web process reads the same set; revoking a token deletes it.
CREATE TABLE web_tokens (
    name         text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    role         text        NOT NULL CHECK (role IN ('viewer', 'operator')),
    token_hash   bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);

-- The console's search by the start of a name: a range scan, however many assets there are.
-- Names never change, so the index costs an insert nothing more than a key.
CREATE INDEX video_assets_name_prefix ON video_assets (name text_pattern_ops);

-- A dead notification sent again from the console is history too.
ALTER TABLE job_events DROP CONSTRAINT job_events_kind_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_kind_check CHECK (kind IN (
    'enqueued', 'requested', 'claimed', 'attempt_failed', 'succeeded', 'failed', 'rescued',
    'released', 'retried', 'refunded', 'withdrawn', 'cancelled', 'reopened', 'resent'));

-- When history was last pruned, and by whom: the console's overview shows it.
CREATE TABLE last_prune (
    id        boolean     PRIMARY KEY DEFAULT true CHECK (id),
    pruned_at timestamptz NOT NULL,
    pruned_by text        NOT NULL,
    deleted   bigint      NOT NULL CHECK (deleted >= 0)
);

-- The key that signs the console's session cookies: made by the first web process, shared
-- by all of them (a session started on one is good on every other), never sent anywhere.
CREATE TABLE web_secret (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    session_key bytea   NOT NULL CHECK (length(session_key) >= 32)
);

-- Whether the leading notifier is logged in to Telegram right now, for the overview: the
-- leader sets it as its connection comes and goes; a new term starts without it.
ALTER TABLE leadership ADD COLUMN telegram_connected boolean NOT NULL DEFAULT false;
