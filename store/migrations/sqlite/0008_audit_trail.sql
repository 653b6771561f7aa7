-- A device's trail (`wardctl audit list --device`) finds entries by target: the device, or one
-- of its commands.
CREATE INDEX audit_log_target ON audit_log (target);
