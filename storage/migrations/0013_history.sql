-- History migration (docs/history-import.md): the bills a previous system issued,
-- imported as bills of origin 'history', shaped like back-entered bills (no
-- signature of ours; red-flushable and refundable here), and bulk issuance
-- from a file.

-- A history bill: issued and countersigned elsewhere, its own numbers. Its
-- number may lie in a segment of ours (the previous system used the same
-- stock): then segment_id names the piece that holds it, used up.
ALTER TABLE bills DROP CONSTRAINT bills_origin_check;
ALTER TABLE bills ADD CONSTRAINT bills_origin_check
    CHECK (origin IN ('engine', 'back_entry', 'history'));
ALTER TABLE bills DROP CONSTRAINT bills_engine_segment;
ALTER TABLE bills ADD CONSTRAINT bills_engine_segment
    CHECK (origin <> 'engine' OR segment_id IS NOT NULL);
ALTER TABLE bills DROP CONSTRAINT bills_signed;
ALTER TABLE bills ADD CONSTRAINT bills_signed
    CHECK (origin <> 'engine' OR status = 'reserved' OR unit_signature IS NOT NULL);
ALTER TABLE bills DROP CONSTRAINT bills_countersigned;
ALTER TABLE bills ADD CONSTRAINT bills_countersigned
    CHECK (origin <> 'engine' OR status NOT IN ('issued', 'red_flushed')
           OR fiscal_signature IS NOT NULL);

-- Numbers the previous system used outside any segment we hold enter stock as
-- granted-and-used ranges, so that the identity granted = issued + available +
-- voided + returned still holds and the numbers can never be leased.
ALTER TABLE segment_grants DROP CONSTRAINT segment_grants_source_check;
ALTER TABLE segment_grants ADD CONSTRAINT segment_grants_source_check
    CHECK (source IN ('grant', 'application', 'opening', 'history'));
-- Where an imported number lies in a segment: the history pieces of a bill code.
CREATE INDEX segments_history ON segments (bill_code, start_no) WHERE note = 'history';
-- Which segment of a bill code holds a number (the import checks every run of
-- imported numbers against them).
CREATE INDEX segments_by_code ON segments (bill_code, start_no);

-- One import of one file: the checkpoint an interrupted import resumes from.
-- phase: staging (rows being copied in; rows_staged is the last file row in),
-- checked (verdicts given, numbers blocked in stock), importing (bills written
-- in batches; done_row/done_red say how far), done.
CREATE TABLE history_jobs (
    id            bigserial PRIMARY KEY,
    file_sha256   text NOT NULL,
    file_name     text NOT NULL,
    fmt           text NOT NULL CHECK (fmt IN ('jsonl', 'csv')),
    operator      text NOT NULL,
    phase         text NOT NULL DEFAULT 'staging'
        CHECK (phase IN ('staging', 'checked', 'importing', 'done')),
    rows_staged   bigint NOT NULL DEFAULT 0,
    done_row      bigint NOT NULL DEFAULT 0,
    done_red      bigint NOT NULL DEFAULT 0,
    imported      bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
-- One unfinished job per file: a second run of the same file resumes it.
CREATE UNIQUE INDEX history_jobs_open ON history_jobs (file_sha256) WHERE phase <> 'done';

-- The rows of a job, as checked in Python, waiting for the set-based checks and
-- their batch. Unlogged: it is rebuilt from the file if the server crashes.
-- verdict: ok (to import), duplicate (a repeat of an earlier row of the file),
-- existing (already imported: a re-run), rejected (see history_rejects).
CREATE UNLOGGED TABLE history_staging (
    job_id           bigint NOT NULL REFERENCES history_jobs ON DELETE CASCADE,
    row_no           bigint NOT NULL,
    -- The bill's id, taken before the row is checked (its sealed data is bound
    -- to it); ids of refused rows are skipped, as ids of failed issuances are.
    bill_id          bigint NOT NULL,
    unit_code        text NOT NULL,
    bus_no           text NOT NULL,
    bus_type         text NOT NULL,
    bill_kind        text NOT NULL,
    place_code       text NOT NULL,
    bill_code        char(8) NOT NULL,
    bill_no          char(10) NOT NULL,
    check_code       text NOT NULL,
    status           text NOT NULL,
    total_fen        bigint NOT NULL,
    -- The payer's data arrives sealed (0010_personal_data.sql): the keyed
    -- digests for search, the request and canonical bytes sealed under the
    -- bill's id; digest is SM3 of the canonical bytes (the log leaf's content,
    -- and how a re-run knows a bill it imported before).
    payer_id_card_hash bytea,
    payer_tel_hash   bytea,
    payer_card_hash  bytea,
    cashier          text NOT NULL,
    bus_time         timestamp NOT NULL,
    issued_at        timestamptz NOT NULL,
    request_sealed   bytea NOT NULL,
    canonical_sealed bytea NOT NULL,
    digest           bytea NOT NULL,
    red_code         char(8),
    red_no           char(10),
    item_sort        int[] NOT NULL,
    item_code        text[] NOT NULL,
    item_name        text[] NOT NULL,
    item_amt         bigint[] NOT NULL,
    item_self        bigint[] NOT NULL,
    channel_code     text[] NOT NULL,
    channel_amt      bigint[] NOT NULL,
    unit_signature   bytea,
    fiscal_signature bytea,
    verdict          text NOT NULL DEFAULT 'ok'
        CHECK (verdict IN ('ok', 'duplicate', 'existing', 'rejected')),
    PRIMARY KEY (job_id, row_no)
);

-- Why a row was not imported: by file row, column (CSV header or JSON field
-- path) and reason. Kept after the job, the source of the rejected-rows report.
CREATE TABLE history_rejects (
    job_id   bigint NOT NULL REFERENCES history_jobs ON DELETE CASCADE,
    row_no   bigint NOT NULL,
    col      text NOT NULL,
    reason   text NOT NULL,
    PRIMARY KEY (job_id, row_no, col)
);

-- What only a history bill has: where it came from and the previous system's
-- signatures over its own document (not over our canonical bytes, so they are
-- kept beside the bill rather than in bills.unit_signature).
CREATE TABLE history_bills (
    bill_id          bigint PRIMARY KEY REFERENCES bills,
    job_id           bigint NOT NULL REFERENCES history_jobs,
    row_no           bigint NOT NULL,
    -- SM3 of the canonical bytes as imported: a re-run compares it (the sealed
    -- bytes differ at every sealing).
    digest           bytea NOT NULL,
    unit_signature   bytea,
    fiscal_signature bytea
);
