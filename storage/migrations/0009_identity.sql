-- Identity: staff users, roles with permissions, user roles with a data scope,
-- registered applications, sessions, request nonces and login failures.
-- Secrets (app HMAC keys, TOTP seeds) are stored sealed (engine.sealing,
-- SM4-GCM under the data key ring), never in clear; passwords as argon2id hashes.

CREATE TABLE roles (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role_permissions (
    role       text NOT NULL REFERENCES roles ON DELETE CASCADE,
    permission text NOT NULL,
    PRIMARY KEY (role, permission)
);

CREATE TABLE users (
    username        text PRIMARY KEY,
    display_name    text NOT NULL DEFAULT '',
    unit_code       text NOT NULL,
    password_hash   text NOT NULL,
    -- Sealed TOTP seed; NULL until enrolled. Roles that manage stock, users,
    -- apps or keys cannot sign in without it.
    totp_sealed     bytea,
    enabled         boolean NOT NULL DEFAULT true,
    -- Lock-out: consecutive failures, and until when sign-in is refused.
    failures        int NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    -- Sessions issued before this are void (password reset, disable).
    sessions_after  timestamptz NOT NULL DEFAULT '-infinity',
    created_by      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- A role given to a user over a data scope: the unit's bill office (office:
-- every point of the unit), or some of its issuing points.
CREATE TABLE user_roles (
    username   text NOT NULL REFERENCES users ON DELETE CASCADE,
    role       text NOT NULL REFERENCES roles,
    unit_code  text NOT NULL,
    office     boolean NOT NULL DEFAULT false,
    places     text[] NOT NULL DEFAULT '{}',
    granted_by text NOT NULL DEFAULT '',
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (username, role)
);

CREATE TABLE apps (
    app_id         text PRIMARY KEY,
    unit_code      text NOT NULL,
    description    text NOT NULL DEFAULT '',
    -- Sealed HMAC-SM3 key of signed request metadata.
    secret_sealed  bytea NOT NULL,
    secret_version int NOT NULL DEFAULT 1,
    -- Client certificate common name that identifies the app (empty: none).
    cert_cn        text NOT NULL DEFAULT '',
    -- Issuing points the app may act for; empty: the whole unit (bill office).
    places         text[] NOT NULL DEFAULT '{}',
    -- Full gRPC method names, or '*' for every method its permissions allow.
    methods        text[] NOT NULL DEFAULT '{}',
    permissions    text[] NOT NULL DEFAULT '{}',
    enabled        boolean NOT NULL DEFAULT true,
    created_by     text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX apps_cert_cn ON apps (cert_cn) WHERE cert_cn <> '';

-- Only the SM3 digest of a session token is kept: a database dump gives no
-- usable session.
CREATE TABLE sessions (
    token_digest bytea PRIMARY KEY,
    username     text NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX sessions_user ON sessions (username);

-- Nonces of signed requests seen within the window: the primary key refuses a
-- replay across every engine sharing the database.
CREATE TABLE request_nonces (
    app_id     text NOT NULL,
    nonce      text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (app_id, nonce)
);
CREATE INDEX request_nonces_expiry ON request_nonces (expires_at);

-- Every sign-in attempt, kept for the audit of 等保 (who tried, from where, result).
CREATE TABLE login_attempts (
    id       bigserial PRIMARY KEY,
    username text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    ok       boolean NOT NULL,
    reason   text NOT NULL DEFAULT ''
);
CREATE INDEX login_attempts_user ON login_attempts (username, at);
