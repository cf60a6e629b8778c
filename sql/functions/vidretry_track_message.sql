-- A host bot sent its own message accepting a request (with the Bot API, say): vidretry's
-- notifier keeps it current, as it does its own acceptances — edited into the place in line,
-- then the video's progress, with a cancel button (cancel_video:<asset id>:<retry round>).
-- False when "user_id" has no waiting request on the asset (nothing to keep current).
CREATE OR REPLACE FUNCTION vidretry_track_message(asset_id bigint, user_id bigint, message_id bigint)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    PERFORM vidretry_check_ids(vidretry_track_message.user_id, NULL,
                               vidretry_track_message.asset_id);
    IF vidretry_track_message.message_id IS NULL OR vidretry_track_message.message_id < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002', MESSAGE = format(
            'message id must be a positive Telegram message id, got %s',
            coalesce(vidretry_track_message.message_id::text, 'null'));
    END IF;
    UPDATE user_requests AS r
    SET accept_message_id = vidretry_track_message.message_id, shown = NULL, checked_at = NULL,
        edited_at = NULL
    WHERE r.asset_id = vidretry_track_message.asset_id
      AND r.user_id = vidretry_track_message.user_id AND r.state = 'pending';
    RETURN FOUND;
END;
$$;

REVOKE ALL ON FUNCTION vidretry_track_message(bigint, bigint, bigint) FROM PUBLIC;
