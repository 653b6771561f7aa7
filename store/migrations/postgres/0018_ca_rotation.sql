-- CA rotation (wardctl ca rotate). One row per CA a rotation step named: 'introduced' (agents
-- are given it to trust; nothing is signed with it yet), 'active' (it signs), 'trusted' (the
-- former CA, trusted until retired), 'retired' (trusted no more). The CA made by init has no
-- row until a rotation starts. Only hashes live here: the CAs themselves (certificate and key)
-- stay in each replica's data directory, so nobody who can write this table can make the
-- controller trust a CA of their own.
CREATE TABLE ca_rotation (
    ca_hash TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('introduced', 'active', 'trusted', 'retired')),
    changed_at BIGINT NOT NULL
);
-- At most one CA in each state but retired: two admins taking the same step at once on two
-- replicas cannot both succeed.
CREATE UNIQUE INDEX ca_rotation_one_per_state ON ca_rotation (state) WHERE state <> 'retired';
-- The CAs each device's agent last reported trusting (JSON array of "sha256:<hex>"), written
-- when it changes: a new CA signs only once every active device trusts it.
ALTER TABLE devices ADD COLUMN trusted_cas TEXT;
