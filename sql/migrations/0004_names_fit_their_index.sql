-- vidretry schema, version 4: an asset's name must fit the unique index on names.
--
-- A btree entry holds at most 2,704 bytes. The old limit, 10,000 characters, let a long name
-- that does not compress (random letters, say) past its CHECK and then fail in the index
-- with a database error. 2,000 bytes of UTF-8 always fit: 2,000 Latin letters, 1,000
-- Cyrillic ones, 500 emoji. NOT VALID: rows already stored fit (or they would not be
-- there) and are not read again.
ALTER TABLE video_assets
    ADD CONSTRAINT name_fits_its_index CHECK (octet_length(name) <= 2000) NOT VALID;
