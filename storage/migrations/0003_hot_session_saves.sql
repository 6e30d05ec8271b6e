-- Session saves as HOT updates.
--   * Every turn updates its session's metadata and updated_at. With
--     updated_at in idx_sessions_bot, no such update could be HOT (heap-only):
--     each wrote a new entry in all three indexes of user_sessions and left
--     the old ones for vacuum. A user rarely has more than one active session,
--     so finding the latest one needs no ordered index: the index keeps its
--     lookup columns and the few matches are sorted.
--   * fillfactor 80 leaves room on each page for the new row version, which a
--     HOT update must find on the same page.

DROP INDEX idx_sessions_bot;
CREATE INDEX idx_sessions_bot ON user_sessions (bot_id, channel, user_id, status);
ALTER TABLE user_sessions SET (fillfactor = 80);
