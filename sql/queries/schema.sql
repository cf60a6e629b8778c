-- Named statements of the migrator (vidretry/db/schema.py): which steps a database has,
-- and the record of applying one.

-- name: try_lock_migrations
-- Serialises concurrent `db upgrade` runs until the transaction ends (the key is the one
-- vidretry 0.19.0 and older take; any constant works, this one spells "vidretry"). Tried,
-- not waited for: a statement waiting for the lock would hold a snapshot, and an index
-- being built CONCURRENTLY by the run that has it would wait for that snapshot in turn.
SELECT pg_try_advisory_xact_lock(8532461411521294969) AS locked;

-- name: hold_the_migrations_lock_while_idle
-- The transaction that holds the lock sits idle while the run works on another connection:
-- the server's timeouts for such a transaction, should the database or the role set them,
-- are off for this one alone (a killed holder would let a second run in). transaction_timeout
-- exists from PostgreSQL 17 on; a setting the server does not have is not in pg_settings.
SELECT count(set_config(name, '0', true)) AS timeouts_off
FROM pg_settings
WHERE name IN ('idle_in_transaction_session_timeout', 'transaction_timeout');

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

-- name: create_steps_table
-- The ledger of the steps after the history (schema 20 on, docs/upgrading.md): one row per
-- step, written when it starts; finished_at is set when it is done (a step run outside a
-- transaction may be left half done, and the next `db upgrade` resumes it). A contract
-- step names the first release that still works with the schema it leaves (breaks_before).
-- vidretry_migrations goes on holding the history (1-19), which is what vidretry 0.19.0 and
-- older check: a contract step that breaks them adds a row above 19 there, so they refuse
-- the schema with their own message.
CREATE TABLE IF NOT EXISTS vidretry_schema_steps (
    version integer PRIMARY KEY CHECK (version > 19),
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('expand', 'contract')),
    breaks_before text CHECK ((kind = 'contract') = (breaks_before IS NOT NULL)),
    checksum text NOT NULL,
    release text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- name: create_functions_table
-- Which release's SQL functions (sql/functions) are installed: one row, replaced by every
-- `db upgrade` that installs a different set (never by an older release's).
CREATE TABLE IF NOT EXISTS vidretry_schema_functions (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    release text NOT NULL,
    checksum text NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now()
);

-- name: schema_ledgers
-- Which of the ledgers exist (a database may be older than any of them).
SELECT to_regclass('vidretry_migrations') IS NOT NULL AS history,
       to_regclass('vidretry_schema_steps') IS NOT NULL AS steps,
       to_regclass('vidretry_schema_functions') IS NOT NULL AS functions;

-- name: applied_steps
SELECT version, name, kind, breaks_before, checksum, release, started_at, finished_at
FROM vidretry_schema_steps ORDER BY version;

-- name: installed_functions
SELECT release, checksum, installed_at FROM vidretry_schema_functions;

-- name: start_step
-- A step begins (in its own transaction, or before the first statement of one that runs
-- outside a transaction). A step begun before and left half done keeps its row.
INSERT INTO vidretry_schema_steps (version, name, kind, breaks_before, checksum, release)
VALUES (%(version)s, %(name)s, %(kind)s, %(breaks_before)s, %(checksum)s, %(release)s)
ON CONFLICT (version) DO NOTHING;

-- name: finish_step
-- The step is done.
UPDATE vidretry_schema_steps SET finished_at = now()
WHERE version = %(version)s AND finished_at IS NULL;

-- name: bar_releases_before_the_policy
-- A contract step breaks vidretry 0.19.0 or older: a version above the history makes
-- them refuse the schema ("newer than this vidretry"), which is what they can say.
INSERT INTO vidretry_migrations (version, name, checksum)
VALUES (%(version)s, %(name)s, NULL)
ON CONFLICT (version) DO NOTHING;

-- name: pin_search_path_to_vidretrys_schema
-- For the rest of this transaction: vidretry's schema (the one its tables are in, wherever it
-- was installed) and the caller's temporary schema last, so that every function created now
-- with "SET search_path FROM CURRENT" looks there alone. Without it a function's search path
-- would be the session's, where PostgreSQL searches pg_temp first: a caller's temporary
-- table would stand in for vidretry's.
SELECT set_config('search_path', quote_ident(n.nspname) || ', pg_temp', true) AS search_path
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass('vidretry_migrations');

-- name: record_functions
-- The set of SQL functions just installed, and whose.
INSERT INTO vidretry_schema_functions AS f (release, checksum)
VALUES (%(release)s, %(checksum)s)
ON CONFLICT (id) DO UPDATE
SET release = excluded.release, checksum = excluded.checksum, installed_at = now();

-- name: index_state
-- An index a step builds CONCURRENTLY: whether it is valid, and whether a build is making it
-- right now (no row: there is no such index).
SELECT i.indisvalid AS valid,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index AS p
               WHERE p.index_relid = i.indexrelid) AS building
FROM pg_index AS i
WHERE i.indexrelid = to_regclass(%(name)s);

-- name: drop_index_concurrently
-- What an interrupted or failed CONCURRENTLY build left: an invalid index, dropped without
-- stopping the table's readers and writers before it is built again.
DROP INDEX CONCURRENTLY IF EXISTS {name}

-- name: wait_for_locks_briefly
-- Each transaction of the migrator: a lock not had within 200 ms (vidretry/db/online.py's
-- LOCK_TIMEOUT_MS) is given up, and the transaction tried again a moment later, so that the
-- claims and sends queued behind a waiting ACCESS EXCLUSIVE lock wait no longer than that.
SET LOCAL lock_timeout = 200

-- name: skip_function_bodies
-- While the SQL functions are installed, as pg_dump does: a function may call one that a
-- later file defines.
SET LOCAL check_function_bodies = off

-- name: schema_summary
-- The schema in a word, for `status` and the console (a process that runs has checked it):
-- the newest step done, and whose SQL functions are installed.
SELECT greatest((SELECT max(version) FROM vidretry_migrations WHERE version <= 19),
                (SELECT max(version) FROM vidretry_schema_steps
                 WHERE finished_at IS NOT NULL)) AS version,
       (SELECT release FROM vidretry_schema_functions) AS functions_release;
