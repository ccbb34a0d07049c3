-- Personal data at rest (docs/personal-data.md): the payer's data is sealed
-- (SM4-GCM, engine/sealing.py) by the engine before it reaches the database, and
-- searched by keyed digests (HMAC-SM3). The database never sees a key, so this
-- migration cannot seal what is already stored: it adds the sealed columns and
-- makes the plaintext ones nullable; the engine's start-up step (and `ebill keys
-- reseal`) seals every row still in plaintext and clears its plaintext columns
-- (storage/personal.py reseal), before the engine serves.

-- bills: the stored request (every payer field: name, ID card, card, phone,
-- e-mail) and the canonical bytes (they name the payer too; the signatures are
-- over them, so they are sealed as they are and opened byte for byte).
ALTER TABLE bills ADD COLUMN request_sealed bytea;
ALTER TABLE bills ADD COLUMN canonical_sealed bytea;
-- Keyed digests of the normalised value, for exact-match search within a unit.
ALTER TABLE bills ADD COLUMN payer_id_card_hash bytea;
ALTER TABLE bills ADD COLUMN payer_tel_hash bytea;
ALTER TABLE bills ADD COLUMN payer_card_hash bytea;

ALTER TABLE bills ALTER COLUMN payer_name DROP NOT NULL;
ALTER TABLE bills ALTER COLUMN payer_id_card_no DROP NOT NULL;
ALTER TABLE bills ALTER COLUMN payer_card_no DROP NOT NULL;
ALTER TABLE bills ALTER COLUMN payer_tel DROP NOT NULL;
ALTER TABLE bills ALTER COLUMN request DROP NOT NULL;
ALTER TABLE bills ALTER COLUMN canonical DROP NOT NULL;

-- The indexes over plaintext hold the plaintext themselves.
DROP INDEX bills_payer_id;
DROP INDEX bills_payer_tel;
DROP INDEX bills_payer_card;
CREATE INDEX bills_payer_id_hash ON bills (unit_code, payer_id_card_hash)
    WHERE payer_id_card_hash IS NOT NULL;
CREATE INDEX bills_payer_tel_hash ON bills (unit_code, payer_tel_hash)
    WHERE payer_tel_hash IS NOT NULL;
CREATE INDEX bills_payer_card_hash ON bills (unit_code, payer_card_hash)
    WHERE payer_card_hash IS NOT NULL;
-- Rows not yet re-sealed (from before this migration), for the start-up step.
CREATE INDEX bills_plain ON bills (id) WHERE request_sealed IS NULL;

-- Every row written or updated from now on holds no plaintext: any code path
-- (or a branch written before this migration) that writes plaintext fails here
-- instead of leaking. NOT VALID: rows from before are checked once re-sealed
-- (the start-up step validates the constraint when none is left).
ALTER TABLE bills ADD CONSTRAINT bills_sealed CHECK (
    payer_name IS NULL AND payer_id_card_no IS NULL AND payer_card_no IS NULL
    AND payer_tel IS NULL AND request IS NULL AND canonical IS NULL
    AND request_sealed IS NOT NULL AND canonical_sealed IS NOT NULL
) NOT VALID;

-- offline_bills: the BillRequest message as received (the whole payer).
ALTER TABLE offline_bills ADD COLUMN request_sealed bytea;
ALTER TABLE offline_bills ALTER COLUMN request DROP NOT NULL;
ALTER TABLE offline_bills ADD CONSTRAINT offline_bills_sealed CHECK (
    request IS NULL AND request_sealed IS NOT NULL
) NOT VALID;
