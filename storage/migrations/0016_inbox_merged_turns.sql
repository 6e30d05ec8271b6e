-- Albums and bursts: several inbound messages of one conversation answered as one turn.
--
-- When a worker leases a message that may gather others (a Telegram album's first item,
-- a message of a burst), the pending messages of its conversation that belong with it are
-- folded into its row in one transaction: the row's message becomes the merged one, and
-- each folded row is finished as 'merged', naming the row that carries it (merged_into).
-- The carrying row's fate is theirs: its turn commits (or is parked) once for all of
-- them, and a lookup of a folded message's id answers with the carrier's status and
-- replies. A crash after the fold loses nothing (the carrier holds every message and is
-- leased again); a crash before it leaves every row pending, as they were.
ALTER TABLE inbox DROP CONSTRAINT inbox_status_check;
ALTER TABLE inbox ADD CONSTRAINT inbox_status_check
    CHECK (status IN ('pending', 'running', 'done', 'dead', 'dropped', 'merged'));
ALTER TABLE inbox ADD COLUMN merged_into BIGINT;
ALTER TABLE inbox ADD CONSTRAINT inbox_merged_into_carrier
    CHECK ((status = 'merged') = (merged_into IS NOT NULL));
