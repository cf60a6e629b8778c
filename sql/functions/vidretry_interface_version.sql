-- The SQL interface (docs/integrate.md): installed by schema 18, and since vidretry 0.20
-- re-applied from sql/functions/ by every `vidretry db upgrade` (docs/upgrading.md).
--
-- The rules live here once. vidretry's own enqueue, retry service and cancel button call the
-- same functions (vidretry/queue/enqueue.py, retry.py, cancel.py), so the command line, the
-- bot, the console and a TypeScript bot calling vidretry_enqueue() follow one rule for names,
-- ids, joining an asset, who may retry and the retry quota. Every change of state inside
-- them is one guarded UPDATE, as everywhere (tests/unit/test_sql.py reads these bodies too).
--
-- The public functions (vidretry_enqueue, vidretry_retry, vidretry_cancel, vidretry_asset,
-- vidretry_track_message, vidretry_interface_version) are a stable interface, version 1: their names, arguments,
-- results and SQLSTATEs change only with a new interface version. They run with the rights
-- of their owner (SECURITY DEFINER, with this schema's search_path), so another program's
-- role needs EXECUTE on them and nothing on the tables; EXECUTE is not granted to PUBLIC.
--
-- Errors, raised with these SQLSTATEs and a one-line message:
--   VR001  the name breaks the name rule      VR010  no such asset
--   VR002  a bad Telegram user, chat or       VR011  not allowed: the user has no request
--          asset id                                  on the asset (and is no admin)
--   VR003  a priority outside 0-9             VR012  not failed: nothing to retry
--   VR004  params that are not a JSON object  VR013  nothing left to cancel
--                                             VR014  the user's retries for today are used up

-- The interface's version: 1 until a name, an argument, a result or a SQLSTATE changes.
CREATE OR REPLACE FUNCTION vidretry_interface_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$;
