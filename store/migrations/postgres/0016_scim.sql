-- SCIM 2.0 provisioning (`serve --scim-listen`): the identity providers' bearer tokens and
-- the users they provision.

-- One token per identity-provider connection (`wardctl scim token create --name entra`).
-- Only the SHA-256 of the token is kept; a revoked token stays for the audit trail.
CREATE TABLE scim_tokens (
    name TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT
);

-- A user as the identity provider describes them. Never deleted: a SCIM DELETE deactivates
-- (and offboards) the user and keeps the record, the trail a compliance officer follows.
-- `attributes` holds the SCIM attributes Ward does not interpret (name, displayName,
-- emails…), as JSON, so a GET answers what the provider sent.
CREATE TABLE scim_users (
    id TEXT PRIMARY KEY NOT NULL,
    -- SCIM userName as the provider sent it (unique without regard to case)…
    user_name TEXT NOT NULL,
    -- …and the Ward user it names: userName when it is an e-mail address, else the user's
    -- primary e-mail. Offboarding is by this address.
    user_email TEXT NOT NULL UNIQUE,
    external_id TEXT,
    active BOOLEAN NOT NULL,
    attributes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    deactivated_at BIGINT,
    deleted_at BIGINT
);

CREATE UNIQUE INDEX scim_users_user_name ON scim_users (lower(user_name));
