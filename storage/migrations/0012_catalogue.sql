-- Catalogue (onboarding): a real hospital's base data beside what 0001 had
-- (units, issuing points, charge codes, bill codes, pay channels): cashiers,
-- per-unit pay channels, validity periods of charge items, HIS-code -> fiscal-code
-- mappings (对照) with effective dates, a record of every change, a version per
-- unit that the validate stage caches against, and the unit's signing certificates.
-- Periods are half-open [valid_from, valid_to): an item withdrawn on day D is
-- usable on bills dated before D and refused on bills dated D or later.

ALTER TABLE units ADD COLUMN info jsonb NOT NULL DEFAULT '{}';

ALTER TABLE issuing_points ADD COLUMN info jsonb NOT NULL DEFAULT '{}';

ALTER TABLE charge_codes
    ADD COLUMN valid_from date,
    ADD COLUMN valid_to   date,
    -- 'platform' when the fiscal platform's catalogue (sync) says so, 'local'
    -- when it came from the hospital's base-data file or an operator.
    ADD COLUMN source     text NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'platform')),
    ADD COLUMN info       jsonb NOT NULL DEFAULT '{}',
    ADD CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from);

ALTER TABLE bill_codes
    ADD COLUMN source     text NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'platform')),
    ADD COLUMN enabled    boolean NOT NULL DEFAULT true;

CREATE TABLE cashiers (
    unit_code    text NOT NULL REFERENCES units,
    cashier_code text NOT NULL,
    name         text NOT NULL,
    -- The issuing point the cashier works at, if fixed.
    place_code   text,
    enabled      boolean NOT NULL DEFAULT true,
    PRIMARY KEY (unit_code, cashier_code),
    FOREIGN KEY (unit_code, place_code) REFERENCES issuing_points
);

-- Pay channels a unit accepts. A unit without rows here accepts the common list
-- (pay_channel_codes), as every unit did before this migration.
CREATE TABLE unit_pay_channels (
    unit_code text NOT NULL REFERENCES units,
    code      text NOT NULL,
    name      text NOT NULL,
    enabled   boolean NOT NULL DEFAULT true,
    PRIMARY KEY (unit_code, code)
);

-- HIS charge item code -> fiscal charge item code, effective [valid_from, valid_to).
-- Periods of one HIS code never overlap (checked under the unit's catalogue lock;
-- an exclusion constraint would need btree_gist, absent from the embedded server).
CREATE TABLE his_mappings (
    unit_code   text NOT NULL REFERENCES units,
    his_code    text NOT NULL,
    his_name    text NOT NULL DEFAULT '',
    charge_code text NOT NULL,
    valid_from  date NOT NULL,
    valid_to    date,
    PRIMARY KEY (unit_code, his_code, valid_from),
    FOREIGN KEY (unit_code, charge_code) REFERENCES charge_codes,
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);

-- Who changed what in the catalogue, when, from what to what.
CREATE TABLE catalog_changes (
    id        bigserial PRIMARY KEY,
    unit_code text NOT NULL,
    kind      text NOT NULL,
    key       text NOT NULL,
    op        text NOT NULL CHECK (op IN ('create', 'update', 'withdraw')),
    actor     text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    before    jsonb,
    after     jsonb
);
CREATE INDEX catalog_changes_unit ON catalog_changes (unit_code, id);

-- Bumped in the transaction of every change of a unit's reference data, so a
-- reader that cached the unit at version v knows at one indexed read whether it
-- must load it again, and never sees a new version with old rows.
CREATE TABLE catalog_versions (
    unit_code text PRIMARY KEY,
    version   bigint NOT NULL
);

CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    u text;
BEGIN
    IF TG_OP = 'DELETE' THEN u := OLD.unit_code; ELSE u := NEW.unit_code; END IF;
    INSERT INTO catalog_versions (unit_code, version) VALUES (u, 1)
        ON CONFLICT (unit_code) DO UPDATE SET version = catalog_versions.version + 1;
    IF TG_OP = 'UPDATE' AND OLD.unit_code IS DISTINCT FROM NEW.unit_code THEN
        INSERT INTO catalog_versions (unit_code, version) VALUES (OLD.unit_code, 1)
            ON CONFLICT (unit_code) DO UPDATE SET version = catalog_versions.version + 1;
    END IF;
    RETURN NULL;
END $$;

-- The common pay channel list concerns every unit.
CREATE FUNCTION bump_all_catalog_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalog_versions (unit_code, version) SELECT unit_code, 1 FROM units
        ON CONFLICT (unit_code) DO UPDATE SET version = catalog_versions.version + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER units_version AFTER INSERT OR UPDATE OR DELETE ON units
    FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER issuing_points_version AFTER INSERT OR UPDATE OR DELETE ON issuing_points
    FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER charge_codes_version AFTER INSERT OR UPDATE OR DELETE ON charge_codes
    FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER bill_codes_version AFTER INSERT OR UPDATE OR DELETE ON bill_codes
    FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER unit_pay_channels_version AFTER INSERT OR UPDATE OR DELETE ON unit_pay_channels
    FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER his_mappings_version AFTER INSERT OR UPDATE OR DELETE ON his_mappings
    FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER pay_channel_codes_version AFTER INSERT OR UPDATE OR DELETE ON pay_channel_codes
    FOR EACH STATEMENT EXECUTE FUNCTION bump_all_catalog_versions();

-- The fiscal platform's catalogue version a unit last synced to.
CREATE TABLE catalog_syncs (
    unit_code        text PRIMARY KEY REFERENCES units,
    platform_version bigint NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    report           jsonb NOT NULL DEFAULT '{}'
);

-- The unit's signing certificates (X.509, SM2 key held by the signing server
-- under key_id). Rotation keeps the old one: bills signed under it still verify.
CREATE TABLE unit_certificates (
    unit_code     text NOT NULL REFERENCES units,
    serial        text NOT NULL,
    key_id        text NOT NULL,
    subject       text NOT NULL,
    not_before    timestamptz NOT NULL,
    not_after     timestamptz NOT NULL,
    der           bytea NOT NULL,
    public_key    bytea NOT NULL,
    -- The certificate new bills are signed under (one per unit).
    active        boolean NOT NULL DEFAULT false,
    registered_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_code, serial)
);
CREATE UNIQUE INDEX unit_certificates_active ON unit_certificates (unit_code) WHERE active;
-- The signing stage caches each unit's active key id by the same version.
CREATE TRIGGER unit_certificates_version AFTER INSERT OR UPDATE OR DELETE ON unit_certificates
    FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
