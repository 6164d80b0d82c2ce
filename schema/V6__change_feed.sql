-- The change feed (api/src/feed): product states go out through the outbox like events, so
-- it needs no table of its own. `api feed backfill` republishes every product's state and
-- records its progress here, in the same transaction as each batch, so a run that stopped
-- resumes where it was.
CREATE TABLE feed_backfills (
    id              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    -- Products up to this id have been republished by this run.
    last_product_id BIGINT      NOT NULL DEFAULT 0,
    products        BIGINT      NOT NULL DEFAULT 0
);
