-- 005_response_storage: exp_data is rewritten whole on every frame of a
-- session (PATCH).  lz4 compresses it about as well as the default pglz
-- (20 KB of frame data to ~9 KB) for a fraction of the CPU, which is most
-- of what PostgreSQL spends on a PATCH.  A server built without lz4 keeps
-- pglz.
DO $$
BEGIN
    ALTER TABLE responses ALTER COLUMN exp_data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available; exp_data stays pglz-compressed';
END;
$$;
