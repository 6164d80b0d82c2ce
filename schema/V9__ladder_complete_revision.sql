-- The image revision whose ladders (every format of every image, or the image given up on)
-- the projector last recorded complete. The freshness of the whole ladder is observed once
-- per revision: a redrive that brings back an image given up on goes through its two steps
-- again, and must not count as the revision completing a second time, hours late.
ALTER TABLE products ADD COLUMN ladder_complete_revision INTEGER;

-- Products whose ladders are complete now: their revision has had its moment.
UPDATE products SET ladder_complete_revision = image_revision
 WHERE jsonb_array_length(image_status) >= cardinality(product_images)
   AND NOT EXISTS (
         SELECT 1 FROM jsonb_array_elements(image_status) AS image
          WHERE image->>'status' = 'pending'
             OR jsonb_array_length(COALESCE(image->'pending_formats', '[]'::jsonb)) > 0);
