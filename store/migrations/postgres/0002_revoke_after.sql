-- Revoke the device once this command is finished (offboarding and lost-mode wipes).
ALTER TABLE commands ADD COLUMN revoke_after BOOLEAN NOT NULL DEFAULT FALSE;
