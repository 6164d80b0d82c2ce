-- A counter that grows with every change of a product row. The cache stores it with each
-- entry and refuses to put back an entry older than what an invalidation recorded, so a
-- slow reader cannot restore a stale product after a write.
ALTER TABLE products ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
