-- Stock management: grant applications, unit-level stock, distribution,
-- requisitions, returns, voids, low-stock warnings, write-off declarations,
-- audit reports, destruction requests.

-- A segment now lives at one of two levels: the unit's bill office (place_code
-- NULL: granted or returned up, not yet distributed) or an issuing point. Its
-- status says what its unused numbers are: usable (enabled), held back
-- (disabled), on their way up (returning), gone back up to the platform
-- (returned) or voided. Numbers below next_no are on bills in every status.
ALTER TABLE segments ALTER COLUMN place_code DROP NOT NULL;
ALTER TABLE segments DROP CONSTRAINT segments_status_check;
ALTER TABLE segments ADD CONSTRAINT segments_status_check
    CHECK (status IN ('enabled', 'disabled', 'returning', 'returned', 'voided'));
-- Voided and returned numbers were never used.
ALTER TABLE segments ADD CONSTRAINT segments_unused_when_gone
    CHECK (status NOT IN ('returned', 'voided') OR next_no = start_no);
ALTER TABLE segments ADD COLUMN received_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE segments ADD COLUMN note text NOT NULL DEFAULT '';

-- What the platform granted the unit: the left side of the stock identity
-- granted = issued + available + voided + returned (per unit and bill code).
CREATE TABLE segment_grants (
    grant_id    text PRIMARY KEY,
    unit_code   text NOT NULL REFERENCES units,
    bill_code   char(8) NOT NULL,
    start_no    bigint NOT NULL,
    end_no      bigint NOT NULL,
    source      text NOT NULL CHECK (source IN ('grant', 'application', 'opening')),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO segment_grants (grant_id, unit_code, bill_code, start_no, end_no, source, recorded_at)
SELECT grant_id, unit_code, bill_code, min(start_no), max(end_no), 'grant', min(granted_at)
FROM segments GROUP BY grant_id, unit_code, bill_code;

-- 赋码申请: drafted, edited or deleted until submitted; the platform then grants
-- (synced back) and the bill office enables the granted segment into stock.
CREATE TABLE grant_applications (
    id            bigserial PRIMARY KEY,
    unit_code     text NOT NULL REFERENCES units,
    bill_code     char(8) NOT NULL,
    count         bigint NOT NULL CHECK (count > 0),
    reason        text NOT NULL DEFAULT '',
    status        text NOT NULL
        CHECK (status IN ('draft', 'submitted', 'granted', 'rejected', 'enabled')),
    fiscal_ref    text,
    grant_id      text,
    start_no      bigint,
    end_no        bigint,
    reject_reason text NOT NULL DEFAULT '',
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- 期初库存: ranges the unit held when the system went live, entered then confirmed.
CREATE TABLE opening_stock (
    id           bigserial PRIMARY KEY,
    unit_code    text NOT NULL REFERENCES units,
    place_code   text,
    bill_code    char(8) NOT NULL,
    start_no     bigint NOT NULL,
    end_no       bigint NOT NULL,
    -- The first number not yet used when the system went live.
    next_no      bigint NOT NULL,
    status       text NOT NULL CHECK (status IN ('draft', 'confirmed')),
    entered_by   text NOT NULL,
    confirmed_by text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (start_no <= end_no AND next_no BETWEEN start_no AND end_no + 1)
);

-- 申领: an issuing point asks the bill office for numbers; approval distributes them.
CREATE TABLE requisitions (
    id           bigserial PRIMARY KEY,
    unit_code    text NOT NULL,
    place_code   text NOT NULL,
    bill_code    char(8) NOT NULL,
    count        bigint NOT NULL CHECK (count > 0),
    status       text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    requested_by text NOT NULL,
    decided_by   text,
    reason       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz,
    FOREIGN KEY (unit_code, place_code) REFERENCES issuing_points
);

-- Automatic distribution: keep an issuing point above `below` by moving `batch`
-- numbers from the bill office whenever it falls under.
CREATE TABLE auto_distribution (
    unit_code  text NOT NULL,
    place_code text NOT NULL,
    bill_code  char(8) NOT NULL,
    below      bigint NOT NULL CHECK (below >= 0),
    batch      bigint NOT NULL CHECK (batch > 0),
    PRIMARY KEY (unit_code, place_code, bill_code),
    FOREIGN KEY (unit_code, place_code) REFERENCES issuing_points
);

-- 申退 / 退库: unused numbers sent one level up, held as 'returning' until confirmed.
CREATE TABLE stock_returns (
    id           bigserial PRIMARY KEY,
    unit_code    text NOT NULL,
    -- NULL: the bill office returns to the fiscal platform.
    place_code   text,
    bill_code    char(8) NOT NULL,
    start_no     bigint NOT NULL,
    end_no       bigint NOT NULL,
    segment_id   bigint NOT NULL REFERENCES segments,
    status       text NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected')),
    reason       text NOT NULL DEFAULT '',
    requested_by text NOT NULL,
    decided_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz
);

-- Every stock movement, with who did it.
CREATE TABLE stock_events (
    id         bigserial PRIMARY KEY,
    unit_code  text NOT NULL,
    place_code text,
    bill_code  char(8),
    op         text NOT NULL,
    start_no   bigint,
    end_no     bigint,
    operator   text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}',
    at         timestamptz NOT NULL DEFAULT now()
);

-- 库存预警: a rule per issuing point and bill code; `below` remembers whether the
-- warning has fired, so it fires once when stock crosses under the threshold
-- and is re-armed when stock is topped up to the threshold or above.
CREATE TABLE stock_alert_rules (
    unit_code  text NOT NULL,
    place_code text NOT NULL,
    bill_code  char(8) NOT NULL,
    threshold  bigint NOT NULL CHECK (threshold > 0),
    email      text NOT NULL DEFAULT '',
    below      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (unit_code, place_code, bill_code)
);
CREATE TABLE stock_alerts (
    id          bigserial PRIMARY KEY,
    unit_code   text NOT NULL,
    place_code  text NOT NULL,
    bill_code   char(8) NOT NULL,
    threshold   bigint NOT NULL,
    available   bigint NOT NULL,
    message     text NOT NULL,
    email       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz,
    -- Email delivery: NULL until sent; attempts and the last error otherwise.
    emailed_at  timestamptz,
    attempts    int NOT NULL DEFAULT 0,
    last_error  text NOT NULL DEFAULT ''
);
CREATE INDEX stock_alerts_unsent ON stock_alerts (id) WHERE emailed_at IS NULL AND email <> '';

-- 核销申报: per unit, bill code (or paper code) and period; computed, edited
-- (lost numbers, remark), submitted; the platform accepts or rejects with a reason.
CREATE TABLE write_offs (
    id           bigserial PRIMARY KEY,
    unit_code    text NOT NULL REFERENCES units,
    medium       text NOT NULL CHECK (medium IN ('ebill', 'paper')),
    code         char(8) NOT NULL,
    period_from  date NOT NULL,
    period_to    date NOT NULL,
    status       text NOT NULL CHECK (status IN ('draft', 'submitted', 'accepted', 'rejected')),
    figures      jsonb NOT NULL,
    lost         jsonb NOT NULL DEFAULT '[]',
    remark       text NOT NULL DEFAULT '',
    reject_reason text NOT NULL DEFAULT '',
    fiscal_ref   text,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (period_from <= period_to)
);
CREATE TABLE write_off_submissions (
    id           bigserial PRIMARY KEY,
    write_off_id bigint NOT NULL REFERENCES write_offs,
    figures      jsonb NOT NULL,
    lost         jsonb NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('accepted', 'rejected', 'error')),
    reason       text NOT NULL DEFAULT '',
    submitted_by text NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT now()
);

-- 审验 / 数据上报: what was reported to the platform for a period, and its receipt.
CREATE TABLE audit_reports (
    id          bigserial PRIMARY KEY,
    unit_code   text NOT NULL REFERENCES units,
    period_from date NOT NULL,
    period_to   date NOT NULL,
    figures     jsonb NOT NULL,
    fiscal_ref  text NOT NULL,
    reported_by text NOT NULL,
    reported_at timestamptz NOT NULL DEFAULT now()
);

-- 销毁申请: paper past its retention period, asked to be destroyed, then approved.
CREATE TABLE destruction_requests (
    id          bigserial PRIMARY KEY,
    unit_code   text NOT NULL REFERENCES units,
    paper_code  char(8) NOT NULL,
    start_no    bigint NOT NULL,
    end_no      bigint NOT NULL,
    papers      int NOT NULL,
    status      text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    reason      text NOT NULL DEFAULT '',
    requested_by text NOT NULL,
    decided_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    decided_at  timestamptz
);
