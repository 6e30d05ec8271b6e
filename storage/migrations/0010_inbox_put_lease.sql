-- The inbox on the web's hot path: a message written and leased in one statement,
-- delivered replies kept with their message, and indexes the planner cannot misuse.

-- The workers' scan for due rows uses an index of the unfinished rows (finished_at is
-- set whenever a row leaves pending/running) rather than of status: a lookup of one
-- conversation's active rows (status IN ...) can then only use idx_inbox_conversation.
-- With two indexes of the same predicate the planner, with the statistics of a small
-- table, probed by scanning the whole seq index, through every entry finished rows
-- leave behind until vacuum.
--
-- The statements of storage/inbox.py and storage/postgres.py rely on that: a row is
-- unfinished (finished_at IS NULL) exactly while it is pending or running, which the
-- constraint below now guarantees (rows a writer left otherwise are mended first).
UPDATE inbox SET finished_at = now()
WHERE finished_at IS NULL AND status NOT IN ('pending', 'running');
UPDATE inbox SET finished_at = NULL
WHERE finished_at IS NOT NULL AND status IN ('pending', 'running');
ALTER TABLE inbox ADD CONSTRAINT inbox_finished_iff_done
    CHECK ((finished_at IS NULL) = (status IN ('pending', 'running')));
DROP INDEX idx_inbox_active;
CREATE INDEX idx_inbox_unfinished ON inbox (seq) WHERE finished_at IS NULL;

-- The replies a turn delivered itself (a web request's), recorded with its row when the
-- turn commits, rather than as outbox rows that no one sends.
ALTER TABLE inbox ADD COLUMN replies JSONB;

-- The inbox's put, as one function: new messages are inserted (a duplicate is skipped),
-- and a message whose caller asks for it (a web request that runs its own turn) is
-- leased in the same statement when no other message of its conversation is active:
-- one round trip and one commit instead of a put and a lease.
--
-- A conversation's puts run one after the other on every instance: each takes a
-- transaction-scoped advisory lock per conversation (in key order, so two batches
-- never deadlock) before it inserts, and looks for active rows only afterwards, in a
-- statement of its own (hence a snapshot taken after the lock): it sees every row
-- that a put of the same conversation committed before it, so a message is leased at
-- once only when no earlier one of its conversation is pending or running. A put that
-- waited behind another gets the later seq.
--
-- p_keys: the batch's conversations as lock keys (64-bit hashes made by
-- storage/inbox.py), distinct. p_batch: a JSON array of {i, bot_id,
-- channel, external_id, conversation, message, received_at, delay, window_, lease,
-- session_id, read_session}. Answers (put_index, put_seq, put_leased) for each new
-- row; leased rows are 'running' with p_token, attempts 1, and a lease of p_lease
-- seconds. A leased row with read_session also brings its turn's session (s_*, NULL
-- when there is none): the turn's read, folded into this round trip.
CREATE FUNCTION inbox_put(p_batch json, p_keys bigint[], p_lease float8, p_token uuid)
RETURNS TABLE (put_index int, put_seq bigint, put_leased bool, put_read bool,
               s_id text, s_bot_id text, s_channel text, s_user_id text, s_status text,
               s_metadata jsonb, s_created_at timestamptz, s_updated_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- The check below must see what was committed while this waited for its locks: a
    -- statement of a read-committed transaction takes its own snapshot; a transaction
    -- of a stricter level keeps its first one, which may predate the locks.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'inbox_put needs a read committed transaction, not %',
            current_setting('transaction_isolation');
    END IF;
    -- In ascending key order whatever the caller sent (a volatile call in the target
    -- list is evaluated after the sort), so that two batches never deadlock.
    PERFORM pg_advisory_xact_lock(k) FROM unnest(p_keys) AS k ORDER BY k;

    RETURN QUERY
    WITH b AS (
        SELECT v.*, row_number() OVER (
            PARTITION BY v.bot_id, v.channel, v.conversation ORDER BY v.i) AS nth
        FROM json_to_recordset(p_batch) AS v(
            i int, bot_id text, channel text, external_id text, conversation text,
            message jsonb, received_at timestamptz, delay float8, window_ bool, lease bool,
            session_id uuid, read_session bool)
    ), v AS (
        -- One index probe per row (a LATERAL with LIMIT: an EXISTS here was planned as one
        -- hashed scan of every active row).
        SELECT b.*, b.lease AND b.nth = 1 AND a.busy IS NULL AS leased
        FROM b LEFT JOIN LATERAL (
            SELECT true AS busy FROM inbox o
            WHERE o.bot_id = b.bot_id AND o.channel = b.channel
              AND o.conversation = b.conversation AND o.status IN ('pending', 'running')
            LIMIT 1
        ) a ON true
    ), ins AS (
        INSERT INTO inbox AS n (bot_id, channel, external_id, conversation, message,
                                received_at, available_at, status, attempts, lease_token,
                                lease_until)
        SELECT v.bot_id, v.channel, v.external_id, v.conversation, v.message, v.received_at,
               now() + v.delay * interval '1 second',
               CASE WHEN v.leased THEN 'running' ELSE 'pending' END,
               CASE WHEN v.leased THEN 1 ELSE 0 END,
               CASE WHEN v.leased THEN p_token END,
               CASE WHEN v.leased THEN now() + p_lease * interval '1 second' END
        FROM v ORDER BY v.i
        ON CONFLICT (bot_id, channel, external_id) DO NOTHING
        RETURNING n.seq, n.bot_id, n.channel, n.external_id, n.conversation, n.received_at,
                  n.status
    ), w AS (
        INSERT INTO conversation_windows AS cw (bot_id, channel, conversation, last_inbound_at)
        SELECT DISTINCT ON (ins.bot_id, ins.channel, ins.conversation)
               ins.bot_id, ins.channel, ins.conversation, ins.received_at
        FROM ins JOIN v USING (bot_id, channel, external_id)
        WHERE v.window_
        ORDER BY ins.bot_id, ins.channel, ins.conversation, ins.received_at DESC
        ON CONFLICT (bot_id, channel, conversation) DO UPDATE
        SET last_inbound_at = greatest(cw.last_inbound_at, EXCLUDED.last_inbound_at),
            closed_at = CASE WHEN EXCLUDED.last_inbound_at > cw.closed_at THEN NULL
                             ELSE cw.closed_at END
    )
    SELECT v.i, ins.seq, ins.status = 'running', ins.status = 'running' AND v.read_session,
           s.id::text, s.bot_id::text, s.channel::text, s.user_id::text, s.status::text,
           s.metadata, s.created_at, s.updated_at
    FROM v JOIN ins USING (bot_id, channel, external_id)
    -- A leased message's session, as its turn would read it next (by the id the message
    -- names, else the user's latest active one): no other turn of the conversation can
    -- write it before this one commits.
    LEFT JOIN LATERAL (
        (SELECT true AS found, u.* FROM user_sessions u
         WHERE ins.status = 'running' AND v.read_session AND v.session_id IS NOT NULL
           AND u.id = v.session_id)
        UNION ALL
        (SELECT true AS found, u.* FROM user_sessions u
         WHERE ins.status = 'running' AND v.read_session AND v.session_id IS NULL
           AND u.bot_id = v.bot_id AND u.channel = v.channel AND u.user_id = v.conversation
           AND u.status = 'active'
         ORDER BY u.updated_at DESC
         LIMIT 1)
    ) s ON true;
END
$$;
