-- The audit log: append-only, each entry chained to the previous one by hash. The head row
-- holds the last (seq, hash) signed by the controller, so truncation is detected too.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    details   TEXT    NOT NULL,     -- JSON
    prev_hash TEXT    NOT NULL,     -- hex SHA-256 of the previous entry (zeros for the first)
    hash      TEXT    NOT NULL
);

CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       INTEGER NOT NULL,
    hash      TEXT    NOT NULL,
    signature BLOB    NOT NULL
);
-- Appending first writes this row, which takes SQLite's write lock before the last entry is
-- read: concurrent appends form one linear chain.
INSERT INTO audit_head (id, seq, hash, signature) VALUES (1, 0, '', x'');
