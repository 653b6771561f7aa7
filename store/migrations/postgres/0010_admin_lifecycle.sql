-- Issue 13: admin lifecycle, two-person issuance, idempotency keys that cannot be squatted,
-- and enrollment tokens that offboarding withdraws for good.

-- Admins: who approved an identity's issuance, who asked for its current certificate (its
-- creator, or whoever renewed it), the break-glass identity `init` makes, and revocation.
ALTER TABLE admins ADD COLUMN approved_by TEXT;
ALTER TABLE admins ADD COLUMN certificate_by TEXT;
ALTER TABLE admins ADD COLUMN break_glass BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE admins ADD COLUMN revoked_at BIGINT;
ALTER TABLE admins ADD COLUMN revoked_by TEXT;
ALTER TABLE admins ADD COLUMN revoke_reason TEXT;

-- Issuing (or renewing someone else's) admin-role identity under `serve --require-approval`:
-- the request waits here until a second admin approves it; the requester's next call uses it.
CREATE TABLE admin_requests (
    id           TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL,          -- issue | renew
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,
    requested_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    approved_by  TEXT,
    approved_at  BIGINT,
    used_at      BIGINT
);
CREATE INDEX admin_requests_name ON admin_requests (name);

-- A token offboarding withdrew is refused whatever the redeeming clock says.
ALTER TABLE enrollment_tokens ADD COLUMN withdrawn_at BIGINT;

-- Idempotency keys get a namespace: `system:KEY` for the keys the controller makes for
-- itself (offboarding, lost mode, retirement, disable/enable, compliance wipes), which no
-- caller can write, and `admin:NAME:KEY` for the key an admin chose. Existing rows are mapped
-- by what the system would have made: its key shape, the command's kind and device, and (for
-- wipes) whether it revokes the device afterwards or was created by the controller; every
-- other row keeps its key, scoped to the admin who created it. First every key moves aside
-- (no stored key starts with a space), so no intermediate value collides with another row.
UPDATE commands SET idempotency_key = ' ' || idempotency_key;
UPDATE commands SET idempotency_key = 'system:' || substr(idempotency_key, 2)
WHERE (kind = 'wipe' AND revoke_after AND (
           substr(idempotency_key, 2) = 'offboard:'
               || (SELECT d.user_email FROM devices d WHERE d.id = commands.device_id)
               || ':' || device_id
        OR substr(idempotency_key, 2) = 'lost:' || device_id || ':wipe'))
   OR (kind = 'lock' AND substr(idempotency_key, 2) = 'lost:' || device_id || ':lock')
   OR (kind = 'wipe' AND created_by = 'controller'
       AND substr(idempotency_key, 2, length('compliance:' || device_id || ':'))
           = 'compliance:' || device_id || ':')
   OR (kind = 'retire' AND (substr(idempotency_key, 2) = 'retire:' || device_id
       OR substr(idempotency_key, 2, length('retire:' || device_id || ':after:'))
           = 'retire:' || device_id || ':after:'))
   OR (kind = 'disable'
       AND substr(idempotency_key, 2, length('disable:' || device_id || ':after:'))
           = 'disable:' || device_id || ':after:')
   OR (kind = 'enable'
       AND substr(idempotency_key, 2, length('enable:' || device_id || ':'))
           = 'enable:' || device_id || ':');
UPDATE commands SET idempotency_key = 'admin:' || created_by || ':' || substr(idempotency_key, 2)
WHERE substr(idempotency_key, 1, 1) = ' ';
