-- Media users send, kept in object storage (the blob store) and referenced here.
--   * media_objects: one row per attachment of an inbound message (bot, channel,
--     provider message id, position in the message), written as soon as its bytes
--     are stored, outside the turn's transaction: a turn that fails and runs again
--     finds the row and does not fetch the file from the provider a second time.
--     blob_key is where the bytes are, in the drive layout
--     ({bot}/users/{user}@{channel}/inbox/...); sha256 and size are of those bytes.
--   * message_history.attachments: what a history row carried, as a JSON list of
--     {kind, key, content_type, size, sha256, filename, caption, error}; NULL for
--     the (many) rows without any, so a text message costs nothing more.

CREATE TABLE media_objects (
    bot_id VARCHAR(100) NOT NULL,
    channel VARCHAR(50) NOT NULL,
    message_id VARCHAR(255) NOT NULL,
    position SMALLINT NOT NULL CHECK (position >= 0),
    user_id VARCHAR(255) NOT NULL,
    kind VARCHAR(20) NOT NULL,
    blob_key VARCHAR(1024) NOT NULL,
    content_type VARCHAR(200) NOT NULL,
    size BIGINT NOT NULL CHECK (size >= 0),
    sha256 CHAR(64) NOT NULL,
    filename VARCHAR(255),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, channel, message_id, position)
);
-- A user's files with a bot, newest last (for the operator, and erasure on request).
CREATE INDEX media_objects_user ON media_objects (bot_id, channel, user_id, created_at);

ALTER TABLE message_history ADD COLUMN attachments JSONB;
