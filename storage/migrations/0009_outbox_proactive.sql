-- Proactive messages: outbox rows written with no turn (the send API, TALK TO from a
-- scheduled job), each optionally named by its sender's idempotency key, so the same
-- request sent again finds its row instead of queueing a second message.
ALTER TABLE outbox ADD COLUMN idempotency_key VARCHAR(255);
CREATE UNIQUE INDEX idx_outbox_idempotency ON outbox (bot_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
