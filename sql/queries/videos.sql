-- Named statements for sending a video once (vidretry/telegram/videos.py): Telegram's
-- reference to a retry round's video, stored when it is first uploaded (schema 14).

-- name: stored_video
-- How to send this retry round's video by reference, if it was uploaded before.
SELECT document_id, access_hash, file_reference, origin_chat_id, origin_access_hash,
       origin_message_id
FROM telegram_videos
WHERE asset_id = %(asset_id)s AND generation = %(retry_round)s;

-- name: remember_video
-- A video was uploaded (a new row), or its reference refreshed from its origin, or it was
-- uploaded again (the origin gone): the reference that works now. Not a state change of a
-- job or a notification: the row is a cache of Telegram's, keyed by the retry round.
INSERT INTO telegram_videos (asset_id, generation, document_id, access_hash, file_reference,
                             origin_chat_id, origin_access_hash, origin_message_id,
                             uploaded_at)
VALUES (%(asset_id)s, %(retry_round)s, %(document_id)s, %(access_hash)s, %(file_reference)s,
        %(origin_chat_id)s, %(origin_access_hash)s, %(origin_message_id)s,
        coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (asset_id, generation) DO UPDATE
SET refreshed_at = CASE WHEN telegram_videos.document_id = excluded.document_id
                        THEN excluded.uploaded_at END,
    uploaded_at = CASE WHEN telegram_videos.document_id = excluded.document_id
                       THEN telegram_videos.uploaded_at ELSE excluded.uploaded_at END,
    document_id = excluded.document_id,
    access_hash = excluded.access_hash,
    file_reference = excluded.file_reference,
    origin_chat_id = excluded.origin_chat_id,
    origin_access_hash = excluded.origin_access_hash,
    origin_message_id = excluded.origin_message_id;
