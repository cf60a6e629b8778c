-- vidretry schema, version 1: the job table, user requests, the outbox and the event log.
--
-- States are text with CHECK constraints rather than enum types: a CHECK can be widened in a
-- later migration inside a transaction, an enum value cannot be removed at all.

-- A video asset is the job. One row per distinct name; users who ask for the same name share it.
CREATE TABLE video_assets (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text        NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 10000),
    params           jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
    state            text        NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'running', 'available', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_at           timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_token      uuid,
    lease_expires_at timestamptz,
    last_error       text,
    result           text,
    -- Bumped by every retry: a failure notification and its button belong to one generation.
    generation       integer     NOT NULL DEFAULT 0 CHECK (generation >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    -- A running job always has a complete lease; no other state has any part of one.
    CONSTRAINT lease_iff_running CHECK (
        (state = 'running') = (lease_owner IS NOT NULL)
        AND (lease_owner IS NULL) = (lease_token IS NULL)
        AND (lease_owner IS NULL) = (lease_expires_at IS NULL)
    ),
    -- finished_at is set exactly when the job is terminal.
    CONSTRAINT finished_iff_terminal CHECK (
        (state IN ('available', 'failed')) = (finished_at IS NOT NULL)
    ),
    CONSTRAINT available_has_result CHECK (state <> 'available' OR result IS NOT NULL),
    CONSTRAINT attempts_within_budget CHECK (attempts <= max_attempts),
    CONSTRAINT running_counts_attempt CHECK (state <> 'running' OR attempts >= 1)
);

-- The claim query reads only due pending rows: keep that index small as finished rows pile up.
CREATE INDEX video_assets_claimable ON video_assets (run_at, id) WHERE state = 'pending';
-- The rescuer scans running rows by lease expiry.
CREATE INDEX video_assets_leases ON video_assets (lease_expires_at) WHERE state = 'running';

-- One Telegram user waiting for one asset. A user asking twice for the same asset is one row.
CREATE TABLE user_requests (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id   bigint      NOT NULL REFERENCES video_assets (id),
    user_id    bigint      NOT NULL,
    chat_id    bigint      NOT NULL,
    state      text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (asset_id, user_id)
);

-- The outbox. Rows are written in the transaction that finishes a job and delivered later by
-- the notifier, so a crash between the two loses nothing.
CREATE TABLE notifications (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id            bigint      NOT NULL REFERENCES video_assets (id),
    user_id             bigint      NOT NULL,
    chat_id             bigint      NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('failed', 'ready')),
    generation          integer     NOT NULL CHECK (generation >= 0),
    payload             jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    state               text        NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sending', 'sent', 'dead')),
    attempts            integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    lease_owner         text,
    lease_token         uuid,
    lease_expires_at    timestamptz,
    last_error          text,
    telegram_message_id bigint,
    sent_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- A second notification for the same failure (or success) of the same asset is impossible.
    UNIQUE (asset_id, user_id, kind, generation),
    CONSTRAINT lease_iff_sending CHECK (
        (state = 'sending') = (lease_owner IS NOT NULL)
        AND (lease_owner IS NULL) = (lease_token IS NULL)
        AND (lease_owner IS NULL) = (lease_expires_at IS NULL)
    ),
    CONSTRAINT sent_iff_sent_at CHECK ((state = 'sent') = (sent_at IS NOT NULL)),
    CONSTRAINT dead_has_reason CHECK (state <> 'dead' OR last_error IS NOT NULL)
);

CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX notifications_leases ON notifications (lease_expires_at) WHERE state = 'sending';

-- Append-only history of every transition of every asset.
CREATE TABLE job_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id   bigint      NOT NULL REFERENCES video_assets (id),
    generation integer     NOT NULL,
    kind       text        NOT NULL CHECK (kind IN (
                   'enqueued', 'requested', 'claimed', 'attempt_failed', 'succeeded',
                   'failed', 'rescued', 'released', 'retried')),
    attempt    integer,
    actor      text,
    detail     text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_events_asset ON job_events (asset_id, id);

-- History is evidence: refuse to rewrite it.
CREATE FUNCTION job_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'job_events is append-only';
END;
$$;

CREATE TRIGGER job_events_append_only
    BEFORE UPDATE OR DELETE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_append_only();
