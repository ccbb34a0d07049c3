-- A bill the fiscal platform refused for good (issue #11): today only red bills
-- end here. The refused red bill stays on file under its number (numbers are
-- never reused) but no longer cancels its original, which is issued again; a
-- later red bill may then cancel the original, so "cancelled once" counts only
-- red bills that were not refused.
ALTER TABLE bills DROP CONSTRAINT bills_status_check;
ALTER TABLE bills ADD CONSTRAINT bills_status_check
    CHECK (status IN ('reserved', 'pending_countersign', 'issued', 'red_flushed', 'rejected'));
DROP INDEX bills_red_once;
CREATE UNIQUE INDEX bills_red_once ON bills (red_of)
    WHERE red_of IS NOT NULL AND status <> 'rejected';
