-- Device credentials for the broker, issued by POST /api/v1/devices.
--
-- The password itself is never stored: it is shown once in the API's answer
-- and handed to the broker (whose password file keeps its own salted hash).
-- The database keeps when the credentials were last set and the SHA-256 of
-- the password: it is 24 random bytes from the OS's CSPRNG (192 bits), not a
-- guessable human password, so a fast unsalted hash gives nothing away (the
-- same reasoning as api_token.token_sha256) and lets anyone holding a
-- password check that it is the current one.
ALTER TABLE device
    ADD COLUMN credentials_set_at timestamptz,
    ADD COLUMN password_sha256    bytea CHECK (octet_length(password_sha256) = 32),
    ADD CONSTRAINT device_credentials_both_or_neither
        CHECK ((credentials_set_at IS NULL) = (password_sha256 IS NULL));
