-- Console search (issue #16): a period is paged by (issued_at, id), the keyset
-- storage.lifecycle.list_bills orders by. With id at the end of the index a page
-- is one range read in page order: the point's day or the office's day among
-- ten million bills costs a page of index, where paging by id alone walked the
-- primary key from the unit's first bill up to the period (266 ms at p99 over
-- one million bills, so seconds over ten).
--
-- The office (every point of the unit) pages by bills_unit_time; one point by
-- bills_place_time, rebuilt with id at its end (the old one is its prefix, so
-- whatever used it uses the new one). bills_issued_at (0015) stays for the
-- inspection's "last minutes over every unit".
CREATE INDEX bills_unit_time ON bills (unit_code, issued_at, id);
CREATE INDEX bills_place_time_id ON bills (unit_code, place_code, issued_at, id);
DROP INDEX bills_place_time;
ALTER INDEX bills_place_time_id RENAME TO bills_place_time;
