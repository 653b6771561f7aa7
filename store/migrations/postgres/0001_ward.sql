-- Ward's schema on PostgreSQL: the same tables as the SQLite store (its migrations 0001-0005).
-- Times are Unix milliseconds (UTC).

CREATE TABLE enrollment_tokens (
    token_hash  TEXT    PRIMARY KEY,
    user_email  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    created_by  TEXT    NOT NULL,
    used_at     BIGINT,
    device_id   TEXT
);
CREATE INDEX enrollment_tokens_user ON enrollment_tokens (user_email);

CREATE TABLE devices (
    id                         TEXT    PRIMARY KEY,
    user_email                 TEXT    NOT NULL,
    state                      TEXT    NOT NULL,
    hostname                   TEXT    NOT NULL,
    os_name                    TEXT    NOT NULL,
    os_version                 TEXT    NOT NULL,
    kernel_version             TEXT    NOT NULL,
    arch                       TEXT    NOT NULL,
    agent_version              TEXT    NOT NULL,
    enrolled_at                BIGINT  NOT NULL,
    last_seen                  BIGINT,
    certificate_serial         TEXT    NOT NULL,
    certificate_expires_at     BIGINT  NOT NULL,
    public_key_der             BYTEA,
    compliant                  BOOLEAN,
    compliance_reasons         TEXT,
    compliance_checks          TEXT,
    compliance_reported_at     BIGINT,
    compliance_policy_revision BIGINT,
    offline_wipe_at            BIGINT,
    offline_wipe_verified      BOOLEAN,
    offline_wipe_receipt       BYTEA,
    offline_wipe_signature     BYTEA
);
CREATE INDEX devices_user ON devices (user_email);

CREATE TABLE admins (
    name       TEXT   PRIMARY KEY,
    role       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL
);

CREATE TABLE certificates (
    serial     TEXT   PRIMARY KEY,
    subject    TEXT   NOT NULL,
    not_before BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    issued_at  BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX certificates_subject ON certificates (subject);

CREATE TABLE commands (
    id                TEXT    PRIMARY KEY,
    device_id         TEXT    NOT NULL REFERENCES devices (id),
    kind              TEXT    NOT NULL,
    scope             TEXT,
    lock_message      TEXT,
    state             TEXT    NOT NULL,
    reason            TEXT    NOT NULL,
    failure_reason    TEXT,
    idempotency_key   TEXT    NOT NULL UNIQUE,
    created_by        TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    deadline          BIGINT,
    delivered_at      BIGINT,
    acknowledged_at   BIGINT,
    finished_at       BIGINT,
    deliveries        BIGINT  NOT NULL DEFAULT 0,
    receipt_body      BYTEA,
    receipt_signature BYTEA,
    receipt_verified  BOOLEAN,
    receipt_error     TEXT,
    approved_by       TEXT
);
CREATE INDEX commands_device_state ON commands (device_id, state);
CREATE INDEX commands_state ON commands (state);

CREATE TABLE policies (
    scope      TEXT   PRIMARY KEY,
    body       TEXT   NOT NULL,
    revision   BIGINT NOT NULL UNIQUE,
    updated_at BIGINT NOT NULL,
    updated_by TEXT   NOT NULL
);
-- Revisions increase across all policies, under concurrent writers too.
CREATE SEQUENCE policy_revisions;

CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    target    TEXT   NOT NULL,
    details   TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL
);

CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       BIGINT  NOT NULL,
    hash      TEXT    NOT NULL,
    signature BYTEA   NOT NULL
);
INSERT INTO audit_head (id, seq, hash, signature) VALUES (1, 0, '', '\x');
