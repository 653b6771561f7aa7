-- The second admin who released a command that needed approval.
ALTER TABLE commands ADD COLUMN approved_by TEXT;
