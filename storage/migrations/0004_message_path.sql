-- The durable message path: inbound claims, outbound replies, delivery reports.
--   * inbox: one row per inbound message, unique per (bot, channel, provider
--     message id), so a redelivered webhook is recognised and dropped. A row is
--     'pending' until a worker leases it ('running', lease_token and
--     lease_until), then 'done' when its turn commits (in the statement that
--     saves the session, its history and its outbox rows), or 'dead' / 'dropped'
--     with its reason. An expired lease makes the row claimable again. seq
--     orders a conversation's messages: only the oldest active row of a
--     conversation can be claimed.
--   * outbox: the replies of committed turns, in order per conversation,
--     with each part's provider id once the provider confirmed it
--     (parts_sent), so a restart never sends a confirmed part again; in_flight
--     marks a part whose request may have left: after a crash such a row is
--     'unknown', never sent again without the operator.
--   * conversation_windows: when each user last wrote (WhatsApp's 24-hour
--     customer-service window), and whether the provider said it closed.
--   * delivery_reports: providers' status callbacks (sent, delivered, read,
--     failed), kept as they arrive: they come out of order.

CREATE TABLE inbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id VARCHAR(100) NOT NULL,
    channel VARCHAR(50) NOT NULL,
    external_id VARCHAR(255) NOT NULL,
    conversation VARCHAR(255) NOT NULL,
    message JSONB NOT NULL,
    status VARCHAR(10) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'dead', 'dropped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_token UUID,
    lease_until TIMESTAMPTZ,
    last_error TEXT,
    session_id UUID,
    received_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    UNIQUE (bot_id, channel, external_id)
) WITH (fillfactor = 80);

-- The rows a worker may claim, oldest first; and a conversation's active rows.
CREATE INDEX idx_inbox_active ON inbox (seq) WHERE status IN ('pending', 'running');
CREATE INDEX idx_inbox_conversation
    ON inbox (bot_id, channel, conversation, seq) WHERE status IN ('pending', 'running');

CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inbox_seq BIGINT,
    bot_id VARCHAR(100) NOT NULL,
    channel VARCHAR(50) NOT NULL,
    conversation VARCHAR(255) NOT NULL,
    message JSONB NOT NULL,
    status VARCHAR(10) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'unknown', 'dead')),
    parts_sent INTEGER NOT NULL DEFAULT 0,
    in_flight BOOLEAN NOT NULL DEFAULT false,
    provider_ids JSONB NOT NULL DEFAULT '[]'::jsonb,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_token UUID,
    lease_until TIMESTAMPTZ,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at TIMESTAMPTZ
) WITH (fillfactor = 80);

CREATE INDEX idx_outbox_active ON outbox (seq) WHERE status IN ('pending', 'sending');
CREATE INDEX idx_outbox_conversation
    ON outbox (bot_id, channel, conversation, seq) WHERE status IN ('pending', 'sending');
CREATE INDEX idx_outbox_inbox ON outbox (inbox_seq);
CREATE INDEX idx_outbox_parked ON outbox (bot_id, channel) WHERE status IN ('dead', 'unknown');

CREATE TABLE conversation_windows (
    bot_id VARCHAR(100) NOT NULL,
    channel VARCHAR(50) NOT NULL,
    conversation VARCHAR(255) NOT NULL,
    last_inbound_at TIMESTAMPTZ NOT NULL,
    closed_at TIMESTAMPTZ,
    PRIMARY KEY (bot_id, channel, conversation)
);

CREATE TABLE delivery_reports (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id VARCHAR(100) NOT NULL,
    channel VARCHAR(50) NOT NULL,
    provider_id VARCHAR(255) NOT NULL,
    status VARCHAR(20) NOT NULL,
    error_code VARCHAR(50),
    error_message TEXT,
    reported_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_delivery_reports_provider ON delivery_reports (bot_id, channel, provider_id);
