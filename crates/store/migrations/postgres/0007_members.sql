-- Members of an org, their emailed sign-in links and their billing-page sessions
-- (see creditgate_domain::member). Links and sessions are stored only as SHA-256 hashes of
-- their secrets: a leaked database yields no usable link or session.
CREATE TABLE members (
    id              TEXT PRIMARY KEY,        -- mem_…
    org_id          TEXT NOT NULL REFERENCES orgs(id),
    email           TEXT NOT NULL,           -- normalized (trimmed, lower-cased)
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,           -- owner, admin, billing, developer
    invited_by      TEXT NOT NULL,           -- a member's id, or "operator"
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_sign_in_at BIGINT
);
CREATE UNIQUE INDEX members_by_org_email ON members (org_id, email);
CREATE INDEX members_by_email ON members (email);

CREATE TABLE sign_in_links (
    token_hash TEXT PRIMARY KEY,
    member_id  TEXT NOT NULL REFERENCES members(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX sign_in_links_by_member ON sign_in_links (member_id);

CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    member_id    TEXT NOT NULL REFERENCES members(id),
    csrf_token   TEXT NOT NULL,              -- every form and cookie-authenticated write carries it
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT
);
CREATE INDEX sessions_by_member ON sessions (member_id);

-- A notice for one member (a sign-in link, an invitation) names the member, and carries the
-- link's secret until it is sent (then cleared).
ALTER TABLE notices ADD COLUMN member_id TEXT;
ALTER TABLE notices ADD COLUMN secret TEXT;
