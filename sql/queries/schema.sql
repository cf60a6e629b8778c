-- Named statements of the migrator (vidretry/schema.py): which migrations a database has,
-- and the record of applying one.

-- name: lock_migrations
-- Serialises concurrent `db upgrade` runs until the transaction ends; any constant works,
-- this one spells "vidretry".
SELECT pg_advisory_xact_lock(8532461411521294969);

-- name: migrations_table_exists
SELECT to_regclass('vidretry_migrations') IS NOT NULL AS present;

-- name: create_migrations_table
-- The migrator's own bookkeeping, created before the first migration runs. checksum is the
-- SHA-256 of the migration file as applied (added in vidretry 0.10: older rows get theirs
-- recorded by the next upgrade, which cannot check what was applied before).
CREATE TABLE IF NOT EXISTS vidretry_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE vidretry_migrations ADD COLUMN IF NOT EXISTS checksum text;

-- name: applied_migrations
-- Read through to_jsonb so that a database older than the checksum column can still say
-- which version it is at (and be told to upgrade).
SELECT version, name, to_jsonb(m) ->> 'checksum' AS checksum
FROM vidretry_migrations m ORDER BY version;

-- name: record_migration
-- One applied migration, with the checksum of the file that was run.
INSERT INTO vidretry_migrations (version, name, checksum)
VALUES (%(version)s, %(name)s, %(checksum)s);

-- name: record_missing_checksum
-- A migration applied before checksums were recorded: from now on it is checked.
UPDATE vidretry_migrations SET checksum = %(checksum)s
WHERE version = %(version)s AND checksum IS NULL;
