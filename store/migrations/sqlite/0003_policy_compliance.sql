-- Policies: one default row and optional per-user overrides. `revision` increases across all
-- changes, so a device's effective policy has a revision it can report back.
CREATE TABLE policies (
    scope      TEXT    PRIMARY KEY,      -- 'default' or 'user:<email>'
    body       TEXT    NOT NULL,         -- JSON of the policy fields
    revision   INTEGER NOT NULL UNIQUE,
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL
);

-- The device's last compliance report, as judged against its effective policy.
ALTER TABLE devices ADD COLUMN compliant INTEGER;              -- NULL until a report arrives
ALTER TABLE devices ADD COLUMN compliance_reasons TEXT;        -- JSON array of strings
ALTER TABLE devices ADD COLUMN compliance_checks TEXT;         -- JSON array of checks
ALTER TABLE devices ADD COLUMN compliance_reported_at INTEGER;
ALTER TABLE devices ADD COLUMN compliance_policy_revision INTEGER;

-- The agent's offline timer wiped the messaging data by itself; its signed receipt.
ALTER TABLE devices ADD COLUMN offline_wipe_at INTEGER;
ALTER TABLE devices ADD COLUMN offline_wipe_verified INTEGER;
ALTER TABLE devices ADD COLUMN offline_wipe_receipt BLOB;
ALTER TABLE devices ADD COLUMN offline_wipe_signature BLOB;
