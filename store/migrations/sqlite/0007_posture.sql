-- Device posture (issue 8): the inventory the agent reports, an admin's remote disable and
-- the graded enforcement of failing checks, each as JSON written by the controller only.
-- A device's state may now also be 'retired'.
ALTER TABLE devices ADD COLUMN inventory TEXT;
ALTER TABLE devices ADD COLUMN disabled TEXT;
ALTER TABLE devices ADD COLUMN enforcement TEXT;
