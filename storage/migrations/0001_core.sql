-- The seed's core tables (docs: seed-architecture.md, "Database Schema"), with
-- what the gateway needs on top:
--   * user_sessions.channel: a user's session is per bot *and* channel;
--     user_sessions.metadata holds the session state (dialog continuation, ...).
--   * message_history.seq: rows appended in one statement share created_at,
--     so history order needs a monotonic column; idx_messages_session
--     covers (session_id, seq) so "last N of a session" is one index scan.
--   * kb_documents.bot_id: every row is scoped by bot (ARCHITECTURE invariant 5).
--   * idx_sessions_bot widened to find a user's active session (see below).
--   * NOT NULL and defaults where the seed left them implicit.

CREATE TABLE user_sessions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id VARCHAR(255) NOT NULL,
    bot_id VARCHAR(100) NOT NULL,
    channel VARCHAR(50) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'active',
    metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE message_history (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    session_id UUID NOT NULL REFERENCES user_sessions(id) ON DELETE CASCADE,
    role VARCHAR(20) NOT NULL,
    content TEXT NOT NULL,
    tokens_used INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE bot_configs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    bot_id VARCHAR(100) NOT NULL UNIQUE,
    config JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE kb_documents (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    bot_id VARCHAR(100) NOT NULL,
    collection VARCHAR(100) NOT NULL,
    content TEXT NOT NULL,
    embedding_id VARCHAR(100),
    metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_sessions_user ON user_sessions (user_id);
-- The seed's idx_sessions_bot, widened: bot_id stays its leading column, so
-- it serves every lookup by bot, and it also finds a user's active session.
-- A separate bot_id-only index would be redundant with it, cost a write on
-- every session save, and tempts the planner (before statistics exist) into
-- scanning all of a bot's sessions to find one.
CREATE INDEX idx_sessions_bot
    ON user_sessions (bot_id, channel, user_id, status, updated_at DESC);
CREATE INDEX idx_messages_session ON message_history (session_id, seq);
CREATE INDEX idx_kb_collection ON kb_documents (bot_id, collection);
