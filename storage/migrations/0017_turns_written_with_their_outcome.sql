-- Turns whose message is written with their outcome (storage/inbox.py, Inbox.reserve).
--
-- A web request whose message has no id of its own (its sender cannot send it again, so
-- there is no redelivery to recognise) and whose replies go out only once its turn is
-- over runs the turn first, from a read that writes nothing. This function then writes
-- the message (done, with the replies it was answered with), the session, the history,
-- the outbox rows and a transfer to a person in one commit: one commit per turn, where a
-- put and a save took two, and one write of the inbox row, where an insert and an update
-- of the same row took two (each with its index entries).
--
-- A turn is written only if its conversation did not change since that read. Under the
-- conversation's advisory lock (the one inbox_put takes, in key order, so that the two
-- never deadlock), in a statement of its own (a snapshot taken after the lock): no
-- message of the conversation is pending or running (a put that leased or queued one
-- since would otherwise run on the session this turn is about to change), its id is not
-- in the inbox, and the session the turn read is still the row it read (its xmin), or,
-- when it read none, the user still has no active session. A turn that fails the check
-- writes nothing and is left out of the answer: its caller runs the message again,
-- written first.
--
-- p_keys: the batch's conversations as lock keys (storage/postgres.py,
-- conversation_lock_key), distinct. p_batch: a JSON array of {seq (reserved from the
-- inbox's sequence before the turn), bot_id, channel, external_id, conversation, message,
-- received_at, id, is_new, status, metadata, user_id, version (the xmin read, NULL for a
-- new session), replies}. p_history, p_stored, p_outbox and p_handoffs as in the save
-- statement of storage/postgres.py. Answers (id, created_at, updated_at, version: its new
-- xmin) of each session written.
CREATE FUNCTION inbox_commit_unwritten(p_keys bigint[], p_batch json, p_history json,
                                       p_stored text[], p_outbox json, p_handoffs json)
RETURNS TABLE (s_id text, s_created_at timestamptz, s_updated_at timestamptz,
               s_version bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- The check must see what was committed while this waited for its locks (see
    -- inbox_put, migration 0010).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'inbox_commit_unwritten needs a read committed transaction, not %',
            current_setting('transaction_isolation');
    END IF;
    PERFORM pg_advisory_xact_lock(k) FROM unnest(p_keys) AS k ORDER BY k;

    RETURN QUERY
    WITH v0 AS (
        SELECT * FROM json_to_recordset(p_batch) AS v(
            seq bigint, bot_id text, channel text, external_id text, conversation text,
            message jsonb, received_at timestamptz, id uuid, is_new bool, status text,
            metadata jsonb, user_id text, version bigint, replies jsonb)
    ), v AS (
        -- One index probe per row for each check (a LATERAL with LIMIT): written as
        -- EXISTS, the planner, sizing the JSON record set at 100 rows, hashed a scan of
        -- every active session instead.
        SELECT v0.* FROM v0
        LEFT JOIN LATERAL (
            SELECT true AS busy FROM inbox o
            WHERE o.bot_id = v0.bot_id AND o.channel = v0.channel
              AND o.conversation = v0.conversation AND o.status IN ('pending', 'running')
            LIMIT 1
        ) a ON true
        LEFT JOIN LATERAL (
            SELECT true AS taken FROM inbox o
            WHERE o.bot_id = v0.bot_id AND o.channel = v0.channel
              AND o.external_id = v0.external_id
            LIMIT 1
        ) d ON true
        LEFT JOIN LATERAL (
            SELECT true AS found FROM user_sessions u
            WHERE v0.is_new AND u.bot_id = v0.bot_id AND u.channel = v0.channel
              AND u.user_id = v0.user_id AND u.status = 'active'
            LIMIT 1
        ) n ON true
        LEFT JOIN LATERAL (
            SELECT u.xmin::text::bigint AS version FROM user_sessions u
            WHERE NOT v0.is_new AND u.id = v0.id
        ) c ON true
        WHERE a.busy IS NULL AND d.taken IS NULL
          AND CASE WHEN v0.is_new THEN n.found IS NULL ELSE c.version = v0.version END
    ), created AS (
        INSERT INTO user_sessions (id, bot_id, channel, user_id, status, metadata)
        SELECT v.id, v.bot_id, v.channel, v.user_id, v.status, v.metadata FROM v WHERE v.is_new
        ON CONFLICT (id) DO NOTHING
        RETURNING user_sessions.id, user_sessions.created_at, user_sessions.updated_at,
                  user_sessions.xmin::text::bigint AS version
    ), updated AS (
        UPDATE user_sessions u SET status = v.status, metadata = v.metadata, updated_at = now()
        FROM v WHERE u.id = ANY(p_stored::uuid[]) AND u.id = v.id AND NOT v.is_new
        RETURNING u.id, u.created_at, u.updated_at, u.xmin::text::bigint
    ), s AS (
        SELECT * FROM created UNION ALL SELECT * FROM updated
    ), ins AS (
        INSERT INTO inbox (seq, bot_id, channel, external_id, conversation, message,
                           received_at, available_at, status, attempts, finished_at,
                           session_id, replies)
        OVERRIDING SYSTEM VALUE
        SELECT v.seq, v.bot_id, v.channel, v.external_id, v.conversation, v.message,
               v.received_at, now(), 'done', 1, now(), v.id, v.replies
        FROM v WHERE v.id IN (SELECT s.id FROM s)
    ), h AS (
        INSERT INTO message_history (
            id, session_id, role, content, tokens_used, created_at, attachments)
        SELECT m.id, m.session_id, m.role, m.content, m.tokens_used,
               coalesce(m.created_at, now()), m.attachments
        FROM ROWS FROM (json_to_recordset(p_history) AS (
            id uuid, session_id uuid, role text, content text, tokens_used int,
            created_at timestamptz, attachments jsonb)
        ) WITH ORDINALITY AS m(id, session_id, role, content, tokens_used, created_at,
                               attachments, ord)
        WHERE m.session_id IN (SELECT s.id FROM s)
        ORDER BY m.ord
    ), o AS (
        INSERT INTO outbox (inbox_seq, bot_id, channel, conversation, message, status,
                            sent_at, parts_sent, provider_ids)
        SELECT r.inbox_seq, r.bot_id, r.channel, r.conversation, r.message,
               CASE WHEN r.delivered THEN 'sent' ELSE 'pending' END,
               CASE WHEN r.delivered THEN now() END,
               coalesce(r.parts_sent, 0), coalesce(r.provider_ids, '[]'::jsonb)
        FROM ROWS FROM (json_to_recordset(p_outbox) AS (
            session_id uuid, inbox_seq bigint, bot_id text, channel text, conversation text,
            message jsonb, delivered bool, parts_sent int, provider_ids jsonb)
        ) WITH ORDINALITY AS r(session_id, inbox_seq, bot_id, channel, conversation, message,
                               delivered, parts_sent, provider_ids, ord)
        WHERE r.session_id IN (SELECT s.id FROM s)
        ORDER BY r.ord
    ), t AS (
        INSERT INTO handoffs (session_id, bot_id, channel, conversation, attendant,
                              department, priority, reason, context)
        SELECT x.session_id, x.bot_id, x.channel, x.conversation, x.attendant, x.department,
               x.priority, x.reason, x.context
        FROM json_to_recordset(p_handoffs) AS x(
            session_id uuid, bot_id text, channel text, conversation text, attendant text,
            department text, priority int, reason text, context text)
        WHERE x.session_id IN (SELECT s.id FROM s)
        ON CONFLICT (session_id) WHERE status IN ('waiting', 'active') DO NOTHING
    )
    SELECT s.id::text, s.created_at, s.updated_at, s.version FROM s;
END
$$;
