-- The vendor-compatible HTTP gateway (ebill/http/gateway/, docs/gateway.md).
--
-- Batch issuance in the vendor interface is asynchronous: batchInvoiceEBill*
-- accepts up to 200 bills under a batch number and answers at once;
-- getBatchInvoiceEBill asks later how each went (0 not generated, 1 generated,
-- 2 failed). A batch is recorded here with its serials in request order; a bill
-- that was issued is found by its serial in bills (so a crash between issuing
-- and recording cannot lose a "generated"), and only refusals are kept here.
CREATE TABLE gateway_batches (
    unit_code   text NOT NULL,
    batch_no    text NOT NULL,
    app_id      text NOT NULL,
    method      text NOT NULL,
    bus_nos     text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when every bill of the batch has an outcome (issued or refused).
    finished_at timestamptz,
    PRIMARY KEY (unit_code, batch_no),
    CHECK (cardinality(bus_nos) BETWEEN 1 AND 200)
);

CREATE TABLE gateway_batch_failures (
    unit_code text NOT NULL,
    batch_no  text NOT NULL,
    bus_no    text NOT NULL,
    code      text NOT NULL,
    message   text NOT NULL,
    PRIMARY KEY (unit_code, batch_no, bus_no),
    FOREIGN KEY (unit_code, batch_no) REFERENCES gateway_batches ON DELETE CASCADE
);

-- Daily reconciliation (checkTotalData, checkDataByPlace, checkWriteOffData)
-- reads one unit's bills of one business day.
CREATE INDEX bills_unit_bus_day ON bills (unit_code, ((bus_time)::date));
