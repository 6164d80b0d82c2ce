-- The asynchronous image pipeline: image revisions and per-image status on products, the
-- transactional outbox, and the projector's record of applied events.

-- image_revision grows whenever product_images changes; results for an older revision are
-- ignored. image_status holds one entry per product_images entry, same order:
--   {"status": "pending" | "compressed" | "failed", "compressed_url", "failure_reason",
--    "bytes_before", "bytes_after", "width", "height", "format"}
-- compressed_product_images has the same length and order as product_images, with NULL
-- where the image is not (yet) compressed.
ALTER TABLE products
    ADD COLUMN image_revision INT   NOT NULL DEFAULT 1,
    ADD COLUMN image_status   JSONB NOT NULL DEFAULT '[]';

UPDATE products SET
    image_status = (SELECT coalesce(jsonb_agg(jsonb_build_object('status', 'pending')), '[]')
                    FROM unnest(product_images)),
    compressed_product_images = array_fill(NULL::text, ARRAY[cardinality(product_images)]);

-- Events written in the same transaction as the change they describe; the relay publishes
-- them after commit and stamps published_at. No foreign key: a deleted product's events
-- must still go out.
CREATE TABLE outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id   BIGINT      NOT NULL,
    event_id     UUID        NOT NULL UNIQUE,
    event_type   TEXT        NOT NULL,
    payload      JSONB       NOT NULL,
    traceparent  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);

-- The relay's scan: unpublished rows in order, and "is there an earlier unpublished row for
-- this product" (order per product).
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_product_unpublished_idx ON outbox (product_id, id) WHERE published_at IS NULL;

-- Events the projector applied, recorded in the same transaction as their effect.
CREATE TABLE applied_events (
    event_id   UUID        PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
