-- Delivery of archived bills to the payer (issue #15, item 3): a transactional
-- outbox of one job per bill and channel, its attempt history, opt-outs,
-- accounts bound for WeChat/Alipay push, editable templates and a per-unit switch.

-- A unit may turn delivery off; no row: on. The archive statement reads it, so
-- switching takes effect from the next batch without a restart.
CREATE TABLE delivery_units (
    unit_code   text PRIMARY KEY REFERENCES units,
    enabled     boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- WeChat openids and Alipay user ids a patient bound to his visit card (就诊卡)
-- through the unit's official account or mini program: bills of that card are
-- pushed there too. The bill itself carries no such id.
CREATE TABLE delivery_accounts (
    unit_code   text NOT NULL REFERENCES units,
    card_no     text NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('wechat', 'alipay')),
    account     text NOT NULL,
    bound_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_code, card_no, channel)
);

-- One job per bill and channel, written by the archive transaction with one
-- INSERT ... SELECT per batch (storage/delivery.py ENQUEUE_SQL). The address is
-- read from the bill when the job is sent, so it is never copied here.
CREATE TABLE delivery_jobs (
    id              bigserial PRIMARY KEY,
    bill_id         bigint NOT NULL REFERENCES bills ON DELETE CASCADE,
    unit_code       text NOT NULL,
    place_code      text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('sms', 'email', 'wechat', 'alipay')),
    status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    -- Failed tries in the current round (a re-send starts a new round).
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text NOT NULL DEFAULT '',
    provider_id     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    UNIQUE (bill_id, channel)
);
CREATE INDEX delivery_jobs_due ON delivery_jobs (next_attempt_at) WHERE status = 'pending';
CREATE INDEX delivery_jobs_place ON delivery_jobs (unit_code, place_code, created_at);

-- Every try of a job: when, the outcome, the provider's message id or the error.
CREATE TABLE delivery_attempts (
    id          bigserial PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES delivery_jobs ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    outcome     text NOT NULL CHECK (outcome IN ('sent', 'retry', 'failed', 'skipped')),
    provider_id text NOT NULL DEFAULT '',
    error       text NOT NULL DEFAULT '',
    -- The address as sent to, masked (138****0001): enough to answer a payer.
    address     text NOT NULL DEFAULT ''
);
CREATE INDEX delivery_attempts_job ON delivery_attempts (job_id, at);

-- A payer who asked not to be sent bills on a channel (phone, email or account
-- as normalised by engine.delivery.normalise_address).
CREATE TABLE delivery_optouts (
    unit_code   text NOT NULL REFERENCES units,
    channel     text NOT NULL CHECK (channel IN ('sms', 'email', 'wechat', 'alipay')),
    address     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_code, channel, address)
);

-- A unit's own wording of a channel's message; without a row the default in
-- engine/delivery.py applies. Jinja2 text, rendered in a sandboxed environment.
CREATE TABLE delivery_templates (
    unit_code         text NOT NULL REFERENCES units,
    channel           text NOT NULL CHECK (channel IN ('sms', 'email', 'wechat', 'alipay')),
    kind              text NOT NULL CHECK (kind IN ('issued', 'red')),
    provider_template text NOT NULL,
    subject           text NOT NULL,
    body              text NOT NULL,
    params            jsonb NOT NULL,
    updated_by        text NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_code, channel, kind)
);

-- Self-service retrieval (item 5): one-time codes sent by SMS, bounded attempts.
CREATE TABLE selfservice_codes (
    id          bigserial PRIMARY KEY,
    unit_code   text NOT NULL,
    phone       text NOT NULL,
    -- What the patient searches by: the phone itself or an ID card number.
    lookup      text NOT NULL,
    -- Who asked: sends are bounded per phone and per address (migration-free
    -- rate limits shared by every engine on the database).
    ip          text NOT NULL,
    code_hash   bytea NOT NULL,
    attempts    int NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX selfservice_codes_phone ON selfservice_codes (unit_code, phone, created_at);
CREATE INDEX selfservice_codes_ip ON selfservice_codes (ip, created_at);

-- A patient who proved his phone: the token's hash, what he may list, until when.
CREATE TABLE selfservice_sessions (
    token_hash  bytea PRIMARY KEY,
    unit_code   text NOT NULL,
    lookup      text NOT NULL,
    expires_at  timestamptz NOT NULL
);
