-- Offline issuance (离线开票): while the fiscal platform cannot be reached, the
-- window hands out a pre-printed paper bill; the settled charge is recorded
-- here with the paper number, and the e-bill is issued later (补开) and linked.
CREATE TABLE offline_bills (
    id            bigserial PRIMARY KEY,
    unit_code     text NOT NULL REFERENCES units,
    bus_no        text NOT NULL,
    place_code    text NOT NULL,
    paper_code    char(8) NOT NULL,
    paper_no      char(10) NOT NULL,
    operator      text NOT NULL,
    request       bytea NOT NULL,      -- the ebill.v1.BillRequest as received
    bill_id       bigint REFERENCES bills,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    back_issued_at timestamptz,
    UNIQUE (unit_code, bus_no),
    UNIQUE (paper_code, paper_no)
);
CREATE INDEX offline_bills_waiting ON offline_bills (id) WHERE bill_id IS NULL;

-- The paper a bill was printed on, for back-issued offline bills (and, later,
-- conversions to paper).
ALTER TABLE bills ADD COLUMN paper_code char(8);
ALTER TABLE bills ADD COLUMN paper_no char(10);
CREATE UNIQUE INDEX bills_paper ON bills (paper_code, paper_no) WHERE paper_code IS NOT NULL;
