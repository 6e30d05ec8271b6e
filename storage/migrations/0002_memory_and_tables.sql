-- BASIC memory and tables (issue 3, items 3 and 4).
--   * bot_memory: SET/GET BOT MEMORY (user_id = '') and SET/GET USER MEMORY
--     (user_id = the user) in one table; the primary key makes a key unique
--     per scope and serves every lookup.
--   * bot_table_rows: the rows of FIND/SAVE tables ("products.csv"), scoped by
--     bot; table_name is lowercased without ".csv"; keys of data are
--     lowercased. id gives insertion order; origin tells the rows a package's
--     .gbdata CSV seeded from the rows dialogs saved at run time.
--   * bot_table_seeds: the checksum of the CSV data last seeded per table, so
--     reloading a package re-seeds only when its CSV changed.

CREATE TABLE bot_memory (
    bot_id VARCHAR(100) NOT NULL,
    user_id VARCHAR(255) NOT NULL DEFAULT '',
    key TEXT NOT NULL,
    value JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, user_id, key)
);

CREATE TABLE bot_table_rows (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id VARCHAR(100) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    data JSONB NOT NULL,
    origin VARCHAR(10) NOT NULL DEFAULT 'runtime' CHECK (origin IN ('seed', 'runtime')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE bot_table_seeds (
    bot_id VARCHAR(100) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    checksum TEXT NOT NULL,
    seeded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, table_name)
);

CREATE INDEX idx_table_rows ON bot_table_rows (bot_id, table_name, id);
