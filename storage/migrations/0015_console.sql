-- Console and reports (issue #16): office-wide bill search.
--
-- The payer's name is sealed with the rest of the request (0010); searching by
-- it needs a keyed digest like the ID card's (HMAC-SM3 under the index key of
-- the data key ring, over the normalised name: storage/personal.py). Rows from
-- before this migration get theirs at the next `ebill keys reseal --reindex`;
-- until then a search by name does not find them.
ALTER TABLE bills ADD COLUMN payer_name_hash bytea;
CREATE INDEX bills_payer_name_hash ON bills (unit_code, payer_name_hash)
    WHERE payer_name_hash IS NOT NULL;

-- The bill office searches every issuing point of its unit at once: a period
-- over the whole unit cannot use bills_place_time (place_code comes before
-- issued_at). An engine serves one hospital or a few, so issued_at alone.
CREATE INDEX bills_issued_at ON bills (issued_at);
