-- Core issuance schema: reference data, number segments, bills.

CREATE TABLE units (
    unit_code   text PRIMARY KEY,
    unit_name   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE issuing_points (
    unit_code   text NOT NULL REFERENCES units,
    place_code  text NOT NULL,
    name        text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    PRIMARY KEY (unit_code, place_code)
);

-- Fiscal charge item codes a unit may put on its bills.
CREATE TABLE charge_codes (
    unit_code   text NOT NULL REFERENCES units,
    charge_code text NOT NULL,
    charge_name text NOT NULL,
    PRIMARY KEY (unit_code, charge_code)
);

CREATE TABLE pay_channel_codes (
    code        text PRIMARY KEY,
    name        text NOT NULL
);

-- Which bill code a unit issues each business type on.
CREATE TABLE bill_codes (
    unit_code   text NOT NULL REFERENCES units,
    bus_type    text NOT NULL,
    bill_code   char(8) NOT NULL,
    bill_name   text NOT NULL,
    PRIMARY KEY (unit_code, bus_type)
);

-- A contiguous range of bill numbers granted by the fiscal platform and
-- distributed to an issuing point. next_no is the durable lease cursor:
-- numbers below it are leased to bill rows in the same transaction.
CREATE TABLE segments (
    id          bigserial PRIMARY KEY,
    unit_code   text NOT NULL REFERENCES units,
    bill_code   char(8) NOT NULL,
    place_code  text NOT NULL,
    start_no    bigint NOT NULL,
    end_no      bigint NOT NULL,
    next_no     bigint NOT NULL,
    status      text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    grant_id    text NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (start_no >= 0 AND end_no < 10000000000 AND start_no <= end_no),
    CHECK (next_no BETWEEN start_no AND end_no + 1),
    FOREIGN KEY (unit_code, place_code) REFERENCES issuing_points
);
CREATE INDEX segments_lookup ON segments (unit_code, place_code, bill_code, start_no)
    WHERE status = 'enabled';
-- Two segments of one bill code never overlap. bill_code (8 digits) and the
-- number (10 digits) fold into one 18-digit key, so a plain range exclusion does
-- the job without the btree_gist extension (absent from the embedded server).
ALTER TABLE segments ADD CONSTRAINT segments_no_overlap EXCLUDE USING gist (
    int8range((bill_code::text)::bigint * 10000000000 + start_no,
              (bill_code::text)::bigint * 10000000000 + end_no, '[]') WITH &&);

CREATE TABLE bills (
    id                bigint PRIMARY KEY,
    unit_code         text NOT NULL REFERENCES units,
    bus_no            text NOT NULL,
    bus_type          text NOT NULL,
    bill_kind         text NOT NULL,
    place_code        text NOT NULL,
    bill_code         char(8) NOT NULL,
    bill_no           char(10) NOT NULL,
    check_code        text NOT NULL,
    segment_id        bigint NOT NULL REFERENCES segments,
    status            text NOT NULL
        CHECK (status IN ('reserved', 'pending_countersign', 'issued', 'red_flushed')),
    total_fen         bigint NOT NULL CHECK (total_fen >= 0),
    payer_name        text NOT NULL,
    payer_id_card_no  text NOT NULL,
    payer_card_no     text NOT NULL,
    payer_tel         text NOT NULL,
    cashier           text NOT NULL,
    bus_time          timestamp NOT NULL,
    issued_at         timestamptz NOT NULL,
    request           jsonb NOT NULL,
    canonical         bytea NOT NULL,
    canonical_version text NOT NULL,
    unit_signature    bytea,
    fiscal_signature  bytea,
    countersigned_at  timestamptz,
    archived_at       timestamptz,
    UNIQUE (unit_code, bus_no),
    UNIQUE (bill_code, bill_no),
    CHECK (status = 'reserved' OR unit_signature IS NOT NULL),
    CHECK (status NOT IN ('issued', 'red_flushed') OR fiscal_signature IS NOT NULL)
);
CREATE SEQUENCE bills_id_seq OWNED BY bills.id;
CREATE INDEX bills_unfinished ON bills (status) WHERE status IN ('reserved', 'pending_countersign');
CREATE INDEX bills_place_time ON bills (unit_code, place_code, issued_at);

CREATE TABLE bill_charge_items (
    bill_id      bigint NOT NULL REFERENCES bills ON DELETE CASCADE,
    sort_no      int NOT NULL,
    charge_code  text NOT NULL,
    charge_name  text NOT NULL,
    amt_fen      bigint NOT NULL,
    self_amt_fen bigint NOT NULL,
    PRIMARY KEY (bill_id, charge_code)
);

CREATE TABLE bill_pay_channels (
    bill_id          bigint NOT NULL REFERENCES bills ON DELETE CASCADE,
    pay_channel_code text NOT NULL,
    amount_fen       bigint NOT NULL,
    PRIMARY KEY (bill_id, pay_channel_code)
);
