-- Human handoff: one row per transfer of a conversation to a person (TRANSFER TO HUMAN).
--   * status: 'waiting' (in the bot's queue), 'active' (an agent holds it), then
--     'resolved' (released back to the bot) or 'abandoned' (returned to the bot by the
--     bot's queue timeout). At most one waiting or active row per session
--     (idx_handoffs_open): the turn that transfers inserts it with its commit, and a
--     retried turn cannot queue the conversation twice.
--   * agent_active_at: the transfer, the take, then each of the agent's replies; the
--     queue timeout (queue-timeout-minutes) counts the agent's silence from it.
--   * release_mode: how the bot takes the conversation back, 'continue' (the dialog goes
--     on where it waited) or 'restart' (the conversation starts over).
CREATE TABLE handoffs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES user_sessions(id) ON DELETE CASCADE,
    bot_id VARCHAR(100) NOT NULL,
    channel VARCHAR(50) NOT NULL,
    conversation VARCHAR(255) NOT NULL,
    status VARCHAR(10) NOT NULL DEFAULT 'waiting'
        CHECK (status IN ('waiting', 'active', 'resolved', 'abandoned')),
    attendant VARCHAR(255),
    department VARCHAR(255),
    priority SMALLINT NOT NULL DEFAULT 1,
    reason TEXT,
    context TEXT,
    agent_id VARCHAR(300),
    agent_name VARCHAR(255),
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    taken_at TIMESTAMPTZ,
    agent_active_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at TIMESTAMPTZ,
    resolved_by VARCHAR(300),
    release_mode VARCHAR(10) CHECK (release_mode IN ('continue', 'restart'))
);

CREATE UNIQUE INDEX idx_handoffs_open ON handoffs (session_id) WHERE status IN ('waiting', 'active');
-- A bot's queue, in the order agents see it; and the timeout's sweep.
CREATE INDEX idx_handoffs_queue
    ON handoffs (bot_id, priority DESC, requested_at) WHERE status IN ('waiting', 'active');
CREATE INDEX idx_handoffs_session ON handoffs (session_id, id DESC);
