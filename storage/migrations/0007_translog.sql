-- The transparency log (docs/transparency-log.md): an append-only Merkle tree
-- over every state-changing operation, with signed tree heads.

-- One row per operation, written in the operation's own transaction (so no
-- operation commits without its entry). leaf_index is NULL until the sequencer
-- gives the entry its place in the tree; leaf_hash is SM3(0x00 || leaf bytes).
-- content_digest is SM3 of the content: the canonical bytes of a bill, given by
-- the writer; for event rows (content set) the sequencer computes it.
CREATE TABLE log_entries (
    id             bigserial PRIMARY KEY,
    op             text NOT NULL,
    principal      text NOT NULL,
    unit_code      text NOT NULL DEFAULT '',
    ref            text NOT NULL DEFAULT '',
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    content_digest bytea,
    content        jsonb,
    bill_id        bigint,
    leaf_index     bigint UNIQUE,
    leaf_hash      bytea,
    CHECK (content_digest IS NOT NULL OR content IS NOT NULL),
    CHECK ((leaf_index IS NULL) = (leaf_hash IS NULL))
);
CREATE INDEX log_entries_queue ON log_entries (id) WHERE leaf_index IS NULL;
CREATE INDEX log_entries_bill ON log_entries (bill_id) WHERE bill_id IS NOT NULL;

-- Perfect subtrees of the tree: (level, idx) covers leaves
-- [idx * 2^level, (idx + 1) * 2^level). Proofs read O(log n) of these.
CREATE TABLE log_nodes (
    level smallint NOT NULL,
    idx   bigint NOT NULL,
    hash  bytea NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed tree heads: the signing server's SM2 signature over the head message.
CREATE TABLE log_heads (
    tree_size  bigint PRIMARY KEY,
    root       bytea NOT NULL,
    signed_at  timestamptz NOT NULL,
    signature  bytea NOT NULL,
    key_id     text NOT NULL,
    public_key bytea NOT NULL
);

-- Bill events (red-flush, refund, paper operations) and stock movements
-- (grants, distribution, returns, write-offs, destruction) become entries in the
-- transaction that writes the event, whichever code path writes it.
CREATE FUNCTION log_bill_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_entries (op, principal, unit_code, ref, occurred_at, content, bill_id)
    VALUES (
        'bill.' || NEW.op, NEW.operator, NEW.unit_code,
        coalesce(
            (SELECT bill_code || '/' || bill_no FROM bills WHERE id = NEW.bill_id),
            'paper:' || coalesce(NEW.paper_code, '') || '/' || coalesce(NEW.paper_no, '')
        ),
        NEW.at, to_jsonb(NEW), NEW.bill_id
    );
    RETURN NULL;
END $$;
CREATE TRIGGER bill_events_log AFTER INSERT ON bill_events
    FOR EACH ROW EXECUTE FUNCTION log_bill_event();

CREATE FUNCTION log_stock_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_entries (op, principal, unit_code, ref, occurred_at, content)
    VALUES (
        'stock.' || NEW.op, NEW.operator, NEW.unit_code,
        'stock:' || coalesce(NEW.place_code, '') || '/' || coalesce(NEW.bill_code, '') || '/'
            || coalesce(NEW.start_no::text, '') || '-' || coalesce(NEW.end_no::text, ''),
        NEW.at, to_jsonb(NEW)
    );
    RETURN NULL;
END $$;
CREATE TRIGGER stock_events_log AFTER INSERT ON stock_events
    FOR EACH ROW EXECUTE FUNCTION log_stock_event();
