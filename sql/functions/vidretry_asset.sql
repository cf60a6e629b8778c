-- An asset as a host bot shows it: no row for an unknown id. "place" is its place in line
-- while it is pending (else NULL), in the claim's own order.
CREATE OR REPLACE FUNCTION vidretry_asset(asset_id bigint)
RETURNS TABLE (id bigint, name text, state text, priority smallint, attempts integer,
               max_attempts integer, generation integer, result text, last_error text,
               place bigint, updated_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
SELECT a.id, a.name, a.state, a.priority, a.attempts, a.max_attempts, a.generation,
       a.result, a.last_error, (SELECT p.place FROM vidretry_place_in_line(a.id) AS p),
       a.updated_at
FROM video_assets AS a
WHERE a.id = asset_id;
$$;

REVOKE ALL ON FUNCTION vidretry_asset(bigint) FROM PUBLIC;
