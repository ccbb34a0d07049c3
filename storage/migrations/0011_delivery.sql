-- Delivery of archived bills to the payer (issue #15, item 3): a transactional
-- inbox written with the archive, one job per bill and channel, its attempt
-- history, opt-outs, accounts bound for WeChat/Alipay push, editable templates
-- and a per-unit switch. Personal data stays sealed (migration 0010): phones,
-- e-mails and visit cards appear here only as keyed digests or masked.

-- A unit may turn delivery off; no row: on. The archive statement reads it, so
-- switching takes effect from the next batch without a restart.
CREATE TABLE delivery_units (
    unit_code   text PRIMARY KEY REFERENCES units,
    enabled     boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- WeChat openids and Alipay user ids a patient bound to his visit card (就诊卡)
-- through the unit's official account or mini program: bills of that card are
-- pushed there too. The bill itself carries no such id. The card is its keyed
-- digest, as bills.payer_card_hash holds it.
CREATE TABLE delivery_accounts (
    unit_code   text NOT NULL REFERENCES units,
    card_hash   bytea NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('wechat', 'alipay')),
    account     text NOT NULL,
    bound_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_code, card_hash, channel)
);

-- Bills archived and not yet looked at by the delivery worker: the archive
-- transaction adds its issued bills with one INSERT ... SELECT per batch
-- (storage/delivery.py ENQUEUE_SQL), nothing more. The worker opens each bill's
-- sealed payer data, off the issuance path, and makes a job per channel.
CREATE TABLE delivery_inbox (
    bill_id     bigint PRIMARY KEY REFERENCES bills ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One job per bill and channel. The address is read from the bill (opened)
-- when the job is sent, so it is never copied here.
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

-- A payer who asked not to be sent bills on a channel: the keyed digest of the
-- phone, email or account as normalised by engine.delivery.normalise_address.
CREATE TABLE delivery_optouts (
    unit_code    text NOT NULL REFERENCES units,
    channel      text NOT NULL CHECK (channel IN ('sms', 'email', 'wechat', 'alipay')),
    address_hash bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_code, channel, address_hash)
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
    -- Keyed digests: the phone the code went to, and what the patient searches
    -- by (lookup_kind 'tel': that phone; 'id_card': an ID card number).
    phone_hash  bytea NOT NULL,
    lookup_kind text NOT NULL CHECK (lookup_kind IN ('tel', 'id_card')),
    lookup_hash bytea NOT NULL,
    -- Who asked: sends are bounded per phone and per address (migration-free
    -- rate limits shared by every engine on the database).
    ip          text NOT NULL,
    code_hash   bytea NOT NULL,
    attempts    int NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX selfservice_codes_phone ON selfservice_codes (phone_hash, created_at);
CREATE INDEX selfservice_codes_ip ON selfservice_codes (ip, created_at);

-- A patient who proved his phone: the token's hash, what he may list, until when.
CREATE TABLE selfservice_sessions (
    token_hash  bytea PRIMARY KEY,
    unit_code   text NOT NULL,
    lookup_kind text NOT NULL,
    lookup_hash bytea NOT NULL,
    expires_at  timestamptz NOT NULL
);
