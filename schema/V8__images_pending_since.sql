-- Since when a product has had images waiting for the pipeline: set when its image list is
-- written (created, or changed by a PATCH), cleared when the projector records the last of
-- them final. NULL while nothing waits. The age of the oldest value is the pipeline's
-- freshness as readers see it, and it keeps growing when nothing reports results at all (a
-- processor that is down), which a histogram of applied results cannot show.
ALTER TABLE products ADD COLUMN images_pending_since TIMESTAMPTZ;

-- Products still pending from before: those changed in the last day may yet be processed;
-- older ones (e.g. marked pending by V3 without an event) never will be, and would otherwise
-- look like a pipeline days behind.
UPDATE products SET images_pending_since = updated_at
 WHERE updated_at > now() - interval '1 day'
   AND (image_status @> '[{"status": "pending"}]'
        OR jsonb_array_length(image_status) < cardinality(product_images));

CREATE INDEX products_images_pending_since_idx ON products (images_pending_since)
 WHERE images_pending_since IS NOT NULL;
