-- The one rule for a video's name (vidretry.queue.enqueue.normalise_name says the same, so
-- the command line refuses a bad name before it asks the database; a test holds the two to
-- one answer): whitespace at either end goes — every character Python's str.strip() takes —
-- and what is left is 1 to 2,000 bytes of UTF-8 with no control character.
CREATE OR REPLACE FUNCTION vidretry_normalise_name(name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
DECLARE
    blank CONSTANT text := '[\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a'
                           '\u2028\u2029\u202f\u205f\u3000]';
    trimmed text := regexp_replace(vidretry_normalise_name.name,
                                   '^' || blank || '+|' || blank || '+$', '', 'g');
BEGIN
    IF trimmed IS NULL OR octet_length(trimmed) NOT BETWEEN 1 AND 2000
       OR trimmed ~ '[\u0001-\u001f\u007f-\u009f]' THEN
        RAISE EXCEPTION USING ERRCODE = 'VR001', MESSAGE = format(
            'asset name must be 1 to 2000 bytes of UTF-8, not only spaces, no control '
            'characters, got %s bytes', coalesce(octet_length(trimmed), 0));
    END IF;
    RETURN trimmed;
END;
$$;
