-- vidretry schema, version 23: the schema says what its "generation" columns hold — the retry
-- round, in a system that generates videos — so a reader of the tables meets one meaning.
-- kind: expand
--
-- Comments only: no column, function or query changes, and 0.19.0's code, which reads and
-- writes these columns by their name, works as before. vidretry's Python calls the value
-- retry_round (its queries select `generation AS retry_round`); the columns keep their
-- names, which the SQL interface's functions and every client's SQL use.
COMMENT ON COLUMN video_assets.generation IS
    'The retry round: 0 for the first, one more on each retry (vidretry retry, the retry '
    'button) and each re-opening of a cancelled video. Attempts count within a round; a '
    'button names the round it was made in, and is stale after the next. Python: retry_round.';
COMMENT ON COLUMN job_events.generation IS
    'The asset''s retry round when the event happened (video_assets.generation).';
COMMENT ON COLUMN notifications.generation IS
    'For a message about an asset: the asset''s retry round it tells of (video_assets.'
    'generation), part of the key that sends it once. For an admins'' notice of no asset: '
    'the number that makes it one of a kind (the pause''s id, the video store''s outage '
    'number, the notification set aside). Python: retry_round.';
COMMENT ON COLUMN telegram_videos.generation IS
    'The retry round whose video Telegram holds (video_assets.generation).';
