-- Read-only looks of `vidretry doctor` at the database (vidretry/app/doctor.py).

-- name: interface_functions_run_as_a_superuser
-- The functions of vidretry's schema that run with their owner's rights (SECURITY DEFINER:
-- the SQL interface), owned by a superuser, that a role other than the owner may call (a
-- grant, or PUBLIC's default): whatever such a function could be made to do, it would do
-- with every right. Found through vidretry_enqueue, wherever vidretry was installed.
SELECT p.proname AS function, o.rolname AS owner,
       array_agg(DISTINCT coalesce(g.rolname, 'PUBLIC')) AS callers
FROM pg_proc AS p
JOIN pg_roles AS o ON o.oid = p.proowner
CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
LEFT JOIN pg_roles AS g ON g.oid = a.grantee
WHERE p.prosecdef AND o.rolsuper AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
  AND p.pronamespace = (SELECT i.pronamespace FROM pg_proc AS i
                        WHERE i.oid = to_regprocedure(
                            'vidretry_enqueue(text, bigint, bigint, jsonb, integer)'))
GROUP BY p.proname, o.rolname
ORDER BY p.proname;

-- name: roles_that_may_create_in_vidretrys_schema
-- Roles besides the one that owns vidretry's objects that may create objects in the schema
-- vidretry's tables are in: by a grant of CREATE (to PUBLIC in `public` before PostgreSQL
-- 15), or as the schema's owner, who may grant it to itself (`owns`). pg_database_owner,
-- the owner of `public` since PostgreSQL 15, stands for the database's owner
-- (`as_database_owner`). An operator or a function of theirs there could be picked over
-- PostgreSQL's own by the interface's statements, search path or not. A superuser may do
-- anything anyway.
WITH vidretry AS (
    -- Where vidretry is, and who owns its objects (its migrator's role).
    SELECT n.oid AS schema, n.nspname, n.nspowner, n.nspacl, c.relowner AS owner
    FROM pg_class AS c
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = to_regclass('vidretry_migrations')
), may_create AS (
    SELECT a.grantee AS role, false AS owns
    FROM vidretry AS v
    CROSS JOIN LATERAL aclexplode(coalesce(v.nspacl, acldefault('n', v.nspowner))) AS a
    WHERE a.privilege_type = 'CREATE'
    UNION ALL
    SELECT v.nspowner, true FROM vidretry AS v
), resolved AS (
    -- pg_database_owner is no role one logs in as: the database's owner is.
    SELECT CASE WHEN m.role = d.pseudo THEN d.datdba ELSE m.role END AS role,
           bool_or(m.owns) AS owns,
           bool_or(coalesce(m.role = d.pseudo, false)) AS as_database_owner
    FROM may_create AS m
    CROSS JOIN (SELECT (SELECT oid FROM pg_roles WHERE rolname = 'pg_database_owner') AS pseudo,
                       datdba
                FROM pg_database WHERE datname = current_database()) AS d
    GROUP BY 1
)
SELECT v.nspname AS schema, coalesce(g.rolname, 'PUBLIC') AS role, r.owns,
       r.as_database_owner, o.rolname AS vidretry_owner
FROM resolved AS r
CROSS JOIN vidretry AS v
JOIN pg_roles AS o ON o.oid = v.owner
LEFT JOIN pg_roles AS g ON g.oid = r.role
WHERE r.role <> v.owner AND NOT coalesce(g.rolsuper, false)
ORDER BY 2;
