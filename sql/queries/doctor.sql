-- Read-only looks of `vidretry doctor` at the database.

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
-- Roles besides its owner that may create objects in the schema vidretry's tables are in
-- (PUBLIC in `public` before PostgreSQL 15): an operator or a function of theirs there
-- could be picked over PostgreSQL's own by the interface's statements, search path or not.
SELECT n.nspname AS schema, coalesce(g.rolname, 'PUBLIC') AS role
FROM pg_namespace AS n
CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
LEFT JOIN pg_roles AS g ON g.oid = a.grantee
WHERE n.oid = (SELECT c.relnamespace FROM pg_class AS c
               WHERE c.oid = to_regclass('vidretry_migrations'))
  AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner
  AND NOT coalesce(g.rolsuper, false)
ORDER BY 2;
