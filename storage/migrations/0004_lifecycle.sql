-- Bill lifecycle: red bills, refunds, back entry, paper stock, an operation log.

-- A red bill (红字票据) carries negative amounts and names the bill it cancels;
-- a bill is cancelled once (the unique index is the backstop of the row-locked
-- check in the reserve transaction). A refund's remainder bill names the bill
-- it replaces.
ALTER TABLE bills DROP CONSTRAINT bills_total_fen_check;
ALTER TABLE bills ADD COLUMN red_of bigint REFERENCES bills;
ALTER TABLE bills ADD COLUMN replaces bigint REFERENCES bills;
ALTER TABLE bills ADD CONSTRAINT bills_red_amount
    CHECK (CASE WHEN red_of IS NULL THEN total_fen >= 0 ELSE total_fen <= 0 END);
CREATE UNIQUE INDEX bills_red_once ON bills (red_of) WHERE red_of IS NOT NULL;
CREATE INDEX bills_replaces ON bills (replaces) WHERE replaces IS NOT NULL;

-- Back entry (原票补录): a bill issued outside this system, recorded so it can be
-- refunded here. It has no segment of ours and no signature of ours.
ALTER TABLE bills ADD COLUMN origin text NOT NULL DEFAULT 'engine'
    CHECK (origin IN ('engine', 'back_entry'));
ALTER TABLE bills ALTER COLUMN segment_id DROP NOT NULL;
ALTER TABLE bills DROP CONSTRAINT bills_check;
ALTER TABLE bills DROP CONSTRAINT bills_check1;
ALTER TABLE bills ADD CONSTRAINT bills_engine_segment
    CHECK (origin = 'back_entry' OR segment_id IS NOT NULL);
ALTER TABLE bills ADD CONSTRAINT bills_signed
    CHECK (origin = 'back_entry' OR status = 'reserved' OR unit_signature IS NOT NULL);
ALTER TABLE bills ADD CONSTRAINT bills_countersigned
    CHECK (origin = 'back_entry' OR status NOT IN ('issued', 'red_flushed')
           OR fiscal_signature IS NOT NULL);
-- Who did it: the cashier for issuance, the operator for every later operation.
ALTER TABLE bills ADD COLUMN operator text NOT NULL DEFAULT '';
-- Set when the e-bill was converted to paper: that happens once, ever.
ALTER TABLE bills ADD COLUMN converted_at timestamptz;

-- Queries by payer (ID card, phone, card) within a unit.
CREATE INDEX bills_payer_id ON bills (unit_code, payer_id_card_no) WHERE payer_id_card_no <> '';
CREATE INDEX bills_payer_tel ON bills (unit_code, payer_tel) WHERE payer_tel <> '';
CREATE INDEX bills_payer_card ON bills (unit_code, payer_card_no) WHERE payer_card_no <> '';

-- Pre-printed paper received by an issuing point: a range of paper numbers of
-- one paper code. next_no is the cursor of the next blank to print on.
CREATE TABLE paper_stock (
    id          bigserial PRIMARY KEY,
    unit_code   text NOT NULL,
    place_code  text NOT NULL,
    paper_code  char(8) NOT NULL,
    start_no    bigint NOT NULL,
    end_no      bigint NOT NULL,
    next_no     bigint NOT NULL,
    operator    text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CHECK (start_no >= 0 AND end_no < 10000000000 AND start_no <= end_no),
    CHECK (next_no BETWEEN start_no AND end_no + 1),
    FOREIGN KEY (unit_code, place_code) REFERENCES issuing_points
);
ALTER TABLE paper_stock ADD CONSTRAINT paper_stock_no_overlap EXCLUDE USING gist (
    int8range((paper_code::text)::bigint * 10000000000 + start_no,
              (paper_code::text)::bigint * 10000000000 + end_no, '[]') WITH &&);

-- Every paper number that left the blank pile: printed with a bill, or voided
-- (damaged on reissue, voided with a red-flush, or a blank voided unprinted).
CREATE TABLE paper_bills (
    paper_code  char(8) NOT NULL,
    paper_no    char(10) NOT NULL,
    unit_code   text NOT NULL,
    place_code  text NOT NULL,
    stock_id    bigint REFERENCES paper_stock,
    bill_id     bigint REFERENCES bills,
    status      text NOT NULL CHECK (status IN ('printed', 'voided')),
    prints      int NOT NULL DEFAULT 0,
    printed_at  timestamptz,
    voided_at   timestamptz,
    void_reason text NOT NULL DEFAULT '',
    operator    text NOT NULL,
    PRIMARY KEY (paper_code, paper_no),
    CHECK (status = 'printed' OR voided_at IS NOT NULL),
    CHECK (bill_id IS NOT NULL OR status = 'voided')
);
-- At most one paper bill in the payer's hands per e-bill.
CREATE UNIQUE INDEX paper_bills_current ON paper_bills (bill_id) WHERE status = 'printed';

-- Paper handed out offline is a printed paper bill of the back-issued e-bill.
INSERT INTO paper_bills (paper_code, paper_no, unit_code, place_code, bill_id, status, prints,
                         printed_at, operator)
SELECT o.paper_code, o.paper_no, o.unit_code, o.place_code, o.bill_id, 'printed', 1,
       o.recorded_at, o.operator
FROM offline_bills o WHERE o.bill_id IS NOT NULL ON CONFLICT DO NOTHING;

-- Every lifecycle operation, with who did it and where.
CREATE TABLE bill_events (
    id          bigserial PRIMARY KEY,
    unit_code   text NOT NULL,
    place_code  text NOT NULL,
    operator    text NOT NULL,
    op          text NOT NULL,
    bill_id     bigint REFERENCES bills,
    paper_code  char(8),
    paper_no    char(10),
    detail      jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bill_events_bill ON bill_events (bill_id);

UPDATE bills b SET converted_at = o.recorded_at
FROM offline_bills o WHERE o.bill_id = b.id;
