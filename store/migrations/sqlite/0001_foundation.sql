-- Ward's foundation schema. Times are Unix milliseconds (UTC).

CREATE TABLE enrollment_tokens (
    token_hash  TEXT    PRIMARY KEY,          -- hex SHA-256 of the token; the token itself is never stored
    user_email  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    used_at     INTEGER,
    device_id   TEXT
);
CREATE INDEX enrollment_tokens_user ON enrollment_tokens (user_email);

CREATE TABLE devices (
    id                     TEXT    PRIMARY KEY,
    user_email             TEXT    NOT NULL,
    state                  TEXT    NOT NULL,
    hostname               TEXT    NOT NULL,
    os_name                TEXT    NOT NULL,
    os_version             TEXT    NOT NULL,
    kernel_version         TEXT    NOT NULL,
    arch                   TEXT    NOT NULL,
    agent_version          TEXT    NOT NULL,
    enrolled_at            INTEGER NOT NULL,
    last_seen              INTEGER,
    certificate_serial     TEXT    NOT NULL,
    certificate_expires_at INTEGER NOT NULL
);
CREATE INDEX devices_user ON devices (user_email);

CREATE TABLE admins (
    name       TEXT    PRIMARY KEY,
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL
);

-- Every certificate the CA issued to a client. A presented certificate is honoured only if its
-- serial is here, for the same subject, and not revoked.
CREATE TABLE certificates (
    serial     TEXT    PRIMARY KEY,
    subject    TEXT    NOT NULL,
    not_before INTEGER NOT NULL,
    not_after  INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX certificates_subject ON certificates (subject);
