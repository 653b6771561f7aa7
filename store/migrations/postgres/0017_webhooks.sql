-- Signed webhooks (`wardctl webhook add`). The secret is kept as issued, not hashed: Ward
-- signs every delivery with it. It is protected as the rest of the database is (SQLite: the
-- data directory, 0700; PostgreSQL: its access control), never returned after `webhook add`
-- and never logged.
CREATE TABLE webhook (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    -- the event types, comma-separated (core::webhook::EventType names)
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    -- PEM certificates an https receiver's certificate must chain to; NULL: the system's roots
    ca_pem TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

-- The outbox: one row per event and receiver, written in the transaction that commits the
-- change raising the event (with its audit entry), so an event exists exactly when its change
-- does. Delivered at least once; the event id is the same at every attempt.
CREATE TABLE webhook_delivery (
    event_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- pending | delivered | abandoned
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    PRIMARY KEY (event_id, webhook_id)
);
CREATE INDEX webhook_delivery_due ON webhook_delivery (state, next_attempt_at);
CREATE INDEX webhook_delivery_by_webhook ON webhook_delivery (webhook_id, created_at);

-- Every attempt, for `webhook deliveries`.
CREATE TABLE webhook_attempt (
    event_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (event_id, webhook_id, attempt)
);
