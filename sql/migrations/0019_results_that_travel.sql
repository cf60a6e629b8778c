-- vidretry schema, version 19: results that travel — videos kept in object storage.
--
-- A job's result is now the URI of its video in the store ([storage] url: file:// or s3://),
-- recorded with its size and SHA-256 in the transaction that completes the job; the notifier
-- checks both as it reads the video back into Telegram's upload (an S3 ETag is no checksum
-- for a multipart upload). Results recorded before keep their bare path and no size.
ALTER TABLE video_assets
    ADD COLUMN result_size bigint CHECK (result_size >= 0),
    ADD COLUMN result_sha256 bytea CHECK (length(result_sha256) = 32),
    -- [storage] delete_after_delivery: the object was deleted once every waiting user had
    -- the video; later sends go by Telegram's reference alone.
    ADD COLUMN result_deleted_at timestamptz;

-- The store has been unreachable since "since" (workers keep their finished videos and try
-- again); "told" once the admins were told. One row while it lasts; the first store that
-- works again ends it.
CREATE TABLE store_outage (
    id      boolean     PRIMARY KEY DEFAULT true CHECK (id),
    since   timestamptz NOT NULL,
    by      text        NOT NULL,
    detail  text        NOT NULL,
    told    boolean     NOT NULL DEFAULT false
);

-- The admins' notice of it: an outbox row of no asset, one per admin and outage (its
-- generation: the outage's start, in minutes since 1970).
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('failed', 'ready', 'alert', 'paused', 'resumed', 'set_aside', 'cancelled',
                    'store_down'));
ALTER TABLE notifications DROP CONSTRAINT notices_have_no_asset;
ALTER TABLE notifications ADD CONSTRAINT notices_have_no_asset
    CHECK ((asset_id IS NULL) = (kind IN ('paused', 'resumed', 'set_aside', 'store_down')));
