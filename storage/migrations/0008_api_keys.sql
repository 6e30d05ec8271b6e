-- API keys of the web API: only a SHA-256 of each key is kept, never the key itself,
-- so a copy of the database grants nothing. bot_id NULL: the key works for every bot.
CREATE TABLE api_keys (
    id VARCHAR(32) PRIMARY KEY,
    bot_id VARCHAR(100),
    role VARCHAR(16) NOT NULL CHECK (role IN ('admin', 'agent', 'app', 'user')),
    user_id VARCHAR(255),
    name VARCHAR(200) NOT NULL DEFAULT '',
    secret_sha256 BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ,
    CHECK ((role = 'user') = (user_id IS NOT NULL))
);
CREATE INDEX api_keys_bot ON api_keys (bot_id);

-- Keys the gateway signs with (the web widget's visitor tokens), made once and shared by
-- every instance on this database. BOTSERVER_VISITOR_SECRET, when set, is used instead.
CREATE TABLE gateway_signing_keys (
    name VARCHAR(100) PRIMARY KEY,
    secret BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
