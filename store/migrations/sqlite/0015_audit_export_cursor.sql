-- Where each audit export stands: the last audit sequence number its collector took
-- (`serve --audit-syslog`: the export named 'syslog'). Written after the entries up to it
-- were written and flushed to the collector; streaming resumes after it, so an entry is sent
-- at least once.
CREATE TABLE audit_export_cursor (
    name TEXT PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
