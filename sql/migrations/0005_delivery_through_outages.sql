-- vidretry schema, version 5: delivery that survives Telegram's outages, and one bot session.
--
-- A retry makes the failure message it answers obsolete: the notifications of that failure
-- that were not sent yet become 'superseded', a final state like 'sent' and 'dead', so only
-- messages that are still true reach the user.
ALTER TABLE notifications DROP CONSTRAINT notifications_state_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_state_check
    CHECK (state IN ('pending', 'sending', 'sent', 'dead', 'superseded'));

-- Telegram gives a bot's updates to one connection, so only one notifier may be logged in.
-- The leader is a row with an expiry that the leader renews and others take over when it
-- lapses (River's leadership). A row, not an advisory lock: a leader cut off from the
-- database cannot know whether its lock's session is still alive, but it knows when its
-- lease ends and stops sending by then; and a row works through transaction pooling.
CREATE TABLE leadership (
    role       text PRIMARY KEY,
    leader     text,
    token      uuid,
    elected_at timestamptz,
    expires_at timestamptz,
    -- Either nobody leads, or the leader is named completely.
    CONSTRAINT leader_complete CHECK (
        (leader IS NULL) = (token IS NULL)
        AND (leader IS NULL) = (elected_at IS NULL)
        AND (leader IS NULL) = (expires_at IS NULL)
    )
);

INSERT INTO leadership (role) VALUES ('notifier');
