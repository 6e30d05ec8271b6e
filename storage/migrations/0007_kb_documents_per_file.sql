-- Knowledge-base ingestion (issue 11, item 5): one kb_documents row per file
-- of a bot's .gbkb/<collection>/ folder, so ingestion re-reads only files
-- whose content hash changed, removes what was deleted and resumes after a
-- crash (a row left 'indexing' is done again).
--   * source_path: the file's path inside its collection ('faq/intro.md').
--   * content_hash: sha256 of the file's bytes when last ingested.
--   * embedding_id: the embedding model its chunks were indexed with ('' for
--     lexical only); another model re-indexes the file.
--   * status: 'indexing', 'indexed' or 'skipped' (unreadable; error says why).
--   * content: the seed's column, kept for compatibility; rows leave it empty
--     (the chunks live in the vector index).
ALTER TABLE kb_documents
    ADD COLUMN source_path TEXT,
    ADD COLUMN content_hash VARCHAR(64) NOT NULL DEFAULT '',
    ADD COLUMN status VARCHAR(20) NOT NULL DEFAULT 'indexed',
    ADD COLUMN chunk_count INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN pages INTEGER,
    ADD COLUMN error TEXT,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ALTER COLUMN content SET DEFAULT '';

-- Makes a file unique per bot and collection; its leading columns are those of
-- idx_kb_collection, which stays for the seed's per-chunk rows.
CREATE UNIQUE INDEX idx_kb_documents_source
    ON kb_documents (bot_id, collection, source_path);
