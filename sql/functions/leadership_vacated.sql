-- A leader's resignation (schema 20): its leadership row is given up, and the standbys hear
-- it on vidretry_leadership at once instead of at their next check. The step that made the
-- trigger defined it first; this file is its definition from then on, with its search path
-- pinned like every other function of vidretry's.
CREATE OR REPLACE FUNCTION leadership_vacated() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify('vidretry_leadership', NEW.role);
    RETURN NULL;
END;
$$;
