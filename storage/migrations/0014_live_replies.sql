-- Replies streamed live while their turn runs (Telegram's message edited in place,
-- WhatsApp's and SMS's paragraphs as they complete), before the turn commits: the inbox
-- row keeps what each attempt of its turn sent (a JSON array of {"id", "sha"?, "end"?}),
-- written by the holder of the lease right after each provider send. A retried turn
-- edits those messages, or skips paragraphs it would send the same, rather than sending
-- them again. The commit clears it: the outbox row then says what was sent.
ALTER TABLE inbox ADD COLUMN live JSONB;
