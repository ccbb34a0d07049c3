-- Issue #11, items 1 and 10.
--
-- 1. An offline paper bill is a blank of its issuing point's paper stock, taken
--    when recorded: its paper bill row exists from then on (printed, the e-bill
--    still to come), so no conversion can print on the same sheet. The row names
--    the offline record until the back-issued e-bill is linked.
ALTER TABLE paper_bills ADD COLUMN offline_id bigint REFERENCES offline_bills;
ALTER TABLE paper_bills DROP CONSTRAINT paper_bills_check1;
ALTER TABLE paper_bills ADD CONSTRAINT paper_bills_owner
    CHECK (bill_id IS NOT NULL OR status = 'voided' OR offline_id IS NOT NULL);

--    An offline bill whose back-issue cannot be finished (its e-bill exists but
--    cannot take its paper, say a sheet recorded before the check above) is set
--    aside here instead of stopping recovery for every other bill; an operator
--    resolves it. quarantine_bill_id is the e-bill it got, if any.
ALTER TABLE offline_bills ADD COLUMN quarantined_at timestamptz;
ALTER TABLE offline_bills ADD COLUMN quarantine_reason text NOT NULL DEFAULT '';
ALTER TABLE offline_bills ADD COLUMN quarantine_bill_id bigint REFERENCES bills;
DROP INDEX offline_bills_waiting;
CREATE INDEX offline_bills_waiting ON offline_bills (id)
    WHERE bill_id IS NULL AND quarantined_at IS NULL;

-- 10. A warning email is claimed by one engine before it is sent; a claim that
--     lapses (the engine died mid-send) lets another engine send it.
ALTER TABLE stock_alerts ADD COLUMN claimed_by text NOT NULL DEFAULT '';
ALTER TABLE stock_alerts ADD COLUMN claimed_until timestamptz;
