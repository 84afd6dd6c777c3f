-- Calendar sync (issue 13): connection health, token key ids, push channels, and the one
-- function through which any language stores a connection it has just authorised.

ALTER TABLE calendar_connections DROP CONSTRAINT calendar_connections_status_check;
ALTER TABLE calendar_connections ADD CONSTRAINT calendar_connections_status_check
    CHECK (status IN ('ACTIVE', 'NEEDS_REAUTH', 'INACTIVE', 'REVOKED', 'ERROR'));
-- Derived, so it can never disagree with status: only an ACTIVE connection is synced.
ALTER TABLE calendar_connections ADD COLUMN is_active boolean GENERATED ALWAYS AS (status = 'ACTIVE') STORED;
ALTER TABLE calendar_connections ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0;
-- Which key encrypted the tokens (app/calendar/tokens.py key_id); NULL: unknown, rotate-key re-encrypts it.
ALTER TABLE calendar_connections ADD COLUMN token_key_id text;
-- Set on every (re)connection: notifications about one connection episode are sent once.
ALTER TABLE calendar_connections ADD COLUMN connected_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE calendar_connections ADD COLUMN deactivated_at timestamptz;
-- Google events.watch channel; only a SHA-256 of its token is kept.
ALTER TABLE calendar_connections ADD COLUMN watch_channel_id text UNIQUE;
ALTER TABLE calendar_connections ADD COLUMN watch_resource_id text;
ALTER TABLE calendar_connections ADD COLUMN watch_token_sha256 bytea;
ALTER TABLE calendar_connections ADD COLUMN watch_expires_at timestamptz;
CREATE INDEX calendar_connections_active ON calendar_connections (id) WHERE status = 'ACTIVE';

-- Store (or re-authorise) a connection. Tokens arrive already encrypted (Fernet, the key in
-- CALENDAR_TOKEN_KEYS): anything that does not look like a Fernet token is refused, so a raw
-- OAuth token can never be written by mistake. Re-connecting makes the connection ACTIVE again.
CREATE FUNCTION calendar_store_connection(
    p_id text, p_org_id text, p_user_id text, p_calendar_id text,
    p_access_token_enc bytea, p_refresh_token_enc bytea, p_token_expires_at timestamptz,
    p_token_key_id text DEFAULT NULL
) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF p_access_token_enc IS NULL OR p_refresh_token_enc IS NULL
       OR substring(p_access_token_enc FROM 1 FOR 6) <> '\x674141414141'::bytea  -- 'gAAAAA'
       OR substring(p_refresh_token_enc FROM 1 FOR 6) <> '\x674141414141'::bytea THEN
        RAISE EXCEPTION 'calendar tokens must be Fernet tokens (encrypted with CALENDAR_TOKEN_KEYS)'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO calendar_connections AS c (id, org_id, user_id, provider, calendar_id, access_token_enc,
        refresh_token_enc, token_expires_at, token_key_id, status, connected_at)
    VALUES (p_id, p_org_id, p_user_id, 'google', COALESCE(p_calendar_id, 'primary'), p_access_token_enc,
        p_refresh_token_enc, p_token_expires_at, p_token_key_id, 'ACTIVE', now())
    ON CONFLICT (id) DO UPDATE SET
        access_token_enc = EXCLUDED.access_token_enc, refresh_token_enc = EXCLUDED.refresh_token_enc,
        token_expires_at = EXCLUDED.token_expires_at, token_key_id = EXCLUDED.token_key_id,
        sync_token = CASE WHEN c.calendar_id = EXCLUDED.calendar_id THEN c.sync_token END,
        calendar_id = EXCLUDED.calendar_id, status = 'ACTIVE', consecutive_failures = 0, last_error = NULL,
        deactivated_at = NULL, connected_at = now()
    WHERE c.org_id = EXCLUDED.org_id AND c.user_id = EXCLUDED.user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'calendar connection % belongs to another user', p_id USING ERRCODE = '42501';
    END IF;
    RETURN p_id;
END $$;
