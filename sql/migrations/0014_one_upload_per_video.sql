-- vidretry schema, version 14: one upload per video.
--
-- The first send of a generation's video uploads it; Telegram's reference to the document
-- (id, access hash, file reference) and the message it was first sent in are kept here, so
-- every other waiting user, every later request and a notifier restart or a new leader
-- send it by reference instead of uploading it again. A file reference expires after some
-- hours: the notifier fetches the origin message again and stores the fresh one
-- (refreshed_at). The access hash is the bot's own: no other account can use these rows.
CREATE TABLE telegram_videos (
    asset_id bigint NOT NULL REFERENCES video_assets (id) ON DELETE CASCADE,
    generation integer NOT NULL,
    document_id bigint NOT NULL,
    access_hash bigint NOT NULL,
    file_reference bytea NOT NULL,
    origin_chat_id bigint NOT NULL,
    origin_access_hash bigint,
    origin_message_id bigint NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    refreshed_at timestamptz,
    PRIMARY KEY (asset_id, generation)
);
