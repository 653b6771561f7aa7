-- Every certificate a device has had and the key it certifies, so a receipt is verified
-- against the key of its time, and a renewed certificate replaces (and revokes) the previous
-- one only once it is in use. A renewal answered but never used stays pending
-- (in_use_at NULL) until a sibling is used, then is revoked with replaced_at set.
CREATE TABLE device_keys (
    serial         TEXT    PRIMARY KEY,
    device_id      TEXT    NOT NULL,
    public_key_der BYTEA   NOT NULL,
    issued_at      BIGINT  NOT NULL,
    in_use_at      BIGINT,
    replaced_at    BIGINT
);
CREATE INDEX device_keys_device ON device_keys (device_id);

-- The key each device holds today, in use since its certificate was issued.
INSERT INTO device_keys (serial, device_id, public_key_der, issued_at, in_use_at)
SELECT d.certificate_serial, d.id, d.public_key_der,
       COALESCE(c.issued_at, d.enrolled_at), COALESCE(c.issued_at, d.enrolled_at)
FROM devices d LEFT JOIN certificates c ON c.serial = d.certificate_serial
WHERE d.public_key_der IS NOT NULL;

-- A suspected clone (JSON: at, serial, detail), shown to admins; NULL: none seen.
ALTER TABLE devices ADD COLUMN renewal_conflict TEXT;
