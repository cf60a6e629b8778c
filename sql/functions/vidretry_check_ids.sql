-- Telegram's ids: a user id is positive, a chat id is not 0 (groups are negative), both
-- within 53 bits; an asset id is a positive bigint.
CREATE OR REPLACE FUNCTION vidretry_check_ids(user_id bigint, chat_id bigint, asset_id bigint)
RETURNS void LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
BEGIN
    IF user_id IS NOT NULL AND user_id NOT BETWEEN 1 AND 9007199254740991 THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002', MESSAGE = format(
            'user id must be a positive Telegram user id (1 to 9007199254740991), got %s',
            user_id);
    END IF;
    -- Compared, not abs(): abs() of the lowest bigint is out of range.
    IF chat_id IS NOT NULL
       AND (chat_id = 0 OR chat_id NOT BETWEEN -9007199254740991 AND 9007199254740991) THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002', MESSAGE = format(
            'chat id must be a Telegram chat id (not 0, at most 53 bits), got %s', chat_id);
    END IF;
    IF asset_id IS NOT NULL AND asset_id < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002',
            MESSAGE = format('asset id must be a positive integer, got %s', asset_id);
    END IF;
END;
$$;
