-- One row per occurrence of a bot's scheduled dialog (SET SCHEDULE): the instance that
-- inserts it runs it, so with many instances each occurrence runs exactly once.
CREATE TABLE scheduled_runs (
    bot_id VARCHAR(100) NOT NULL,
    dialog VARCHAR(255) NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    instance VARCHAR(100) NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, dialog, due_at)
);
