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

-- The other state-changing rows of stock and paper management, logged whatever
-- writes them: the row as it is after the change (before, for a deletion). The
-- principal is the first of the named person columns that is set (the decider
-- of a decided request, else who asked). op is '<name>.insert|update|delete'.
CREATE FUNCTION log_row_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    who text := '';
    i int;
BEGIN
    FOR i IN 1 .. TG_NARGS - 1 LOOP
        IF coalesce(r ->> TG_ARGV[i], '') <> '' THEN
            who := r ->> TG_ARGV[i];
            EXIT;
        END IF;
    END LOOP;
    INSERT INTO log_entries (op, principal, unit_code, ref, content)
    VALUES (
        TG_ARGV[0] || '.' || lower(TG_OP), who, coalesce(r ->> 'unit_code', ''),
        TG_TABLE_NAME || ':' || coalesce(r ->> 'id', ''), r
    );
    RETURN NULL;
END $$;

CREATE TRIGGER grant_applications_log AFTER INSERT OR UPDATE OR DELETE ON grant_applications
    FOR EACH ROW EXECUTE FUNCTION log_row_change('stock.grant_application', 'created_by');
CREATE TRIGGER opening_stock_log AFTER INSERT OR UPDATE ON opening_stock
    FOR EACH ROW EXECUTE FUNCTION log_row_change('stock.opening', 'confirmed_by', 'entered_by');
CREATE TRIGGER requisitions_log AFTER INSERT OR UPDATE ON requisitions
    FOR EACH ROW EXECUTE FUNCTION
    log_row_change('stock.requisition', 'decided_by', 'requested_by');
CREATE TRIGGER auto_distribution_log AFTER INSERT OR UPDATE OR DELETE ON auto_distribution
    FOR EACH ROW EXECUTE FUNCTION log_row_change('stock.auto_distribution');
CREATE TRIGGER stock_returns_log AFTER INSERT OR UPDATE ON stock_returns
    FOR EACH ROW EXECUTE FUNCTION log_row_change('stock.return', 'decided_by', 'requested_by');
CREATE TRIGGER write_offs_log AFTER INSERT OR UPDATE ON write_offs
    FOR EACH ROW EXECUTE FUNCTION log_row_change('stock.write_off', 'created_by');
CREATE TRIGGER write_off_submissions_log AFTER INSERT OR UPDATE ON write_off_submissions
    FOR EACH ROW EXECUTE FUNCTION log_row_change('stock.write_off_submission', 'submitted_by');
CREATE TRIGGER audit_reports_log AFTER INSERT OR UPDATE ON audit_reports
    FOR EACH ROW EXECUTE FUNCTION log_row_change('stock.audit_report', 'reported_by');
CREATE TRIGGER destruction_requests_log AFTER INSERT OR UPDATE ON destruction_requests
    FOR EACH ROW EXECUTE FUNCTION
    log_row_change('stock.destruction', 'decided_by', 'requested_by');
CREATE TRIGGER offline_bills_log AFTER INSERT OR UPDATE ON offline_bills
    FOR EACH ROW EXECUTE FUNCTION log_row_change('bill.offline', 'operator');
