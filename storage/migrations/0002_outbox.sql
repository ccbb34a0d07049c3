-- Transactional outbox of unfinished bills.
--
-- The reserve transaction puts every new bill here, with a grace period; the
-- archive statement removes it once the bill is issued, or pushes its next
-- attempt back (exponential backoff) while the fiscal platform is away. The
-- recovery loop takes rows that are due. A bill is therefore finished even when
-- the engine dies between reserve and archive: every leased number ends up on
-- a signed, countersigned bill.
CREATE TABLE outbox (
    bill_id          bigint PRIMARY KEY REFERENCES bills ON DELETE CASCADE,
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);
