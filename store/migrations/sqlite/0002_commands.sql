-- Device commands. A row is committed before the admin API answers; its state only changes
-- through the core state machine, written with a compare-and-set on the previous state.

-- The device's public key (DER SubjectPublicKeyInfo), to verify the receipts it signs.
ALTER TABLE devices ADD COLUMN public_key_der BLOB;

CREATE TABLE commands (
    id                TEXT    PRIMARY KEY,
    device_id         TEXT    NOT NULL REFERENCES devices (id),
    kind              TEXT    NOT NULL,          -- lock | unlock | wipe
    scope             TEXT,                      -- wipe: messaging | full
    lock_message      TEXT,
    state             TEXT    NOT NULL,
    reason            TEXT    NOT NULL,
    failure_reason    TEXT,
    idempotency_key   TEXT    NOT NULL UNIQUE,
    created_by        TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    deadline          INTEGER,
    delivered_at      INTEGER,
    acknowledged_at   INTEGER,
    finished_at       INTEGER,
    deliveries        INTEGER NOT NULL DEFAULT 0,
    receipt_body      BLOB,
    receipt_signature BLOB,
    receipt_verified  INTEGER,
    receipt_error     TEXT
);
CREATE INDEX commands_device_state ON commands (device_id, state);
CREATE INDEX commands_state ON commands (state);
