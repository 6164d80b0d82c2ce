-- Products with the seed's columns. Prices are exact decimals (never floats) with two places.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE products (
    id                        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                   BIGINT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    product_name              TEXT          NOT NULL CHECK (char_length(product_name) BETWEEN 1 AND 255),
    product_description       TEXT          NOT NULL DEFAULT '',
    product_images            TEXT[]        NOT NULL DEFAULT '{}',
    -- Same order and length as product_images once processed; empty until then.
    compressed_product_images TEXT[]        NOT NULL DEFAULT '{}',
    product_price             NUMERIC(12, 2) NOT NULL CHECK (product_price >= 0),
    created_at                TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ   NOT NULL DEFAULT now()
);

-- The list query filters by user and price range and pages by (price, id): one index range
-- scan, already in order, whatever the number of products.
CREATE INDEX products_user_price_id_idx ON products (user_id, product_price, id);

-- Case-insensitive substring search on the name (ILIKE '%…%') uses trigrams.
CREATE INDEX products_name_trgm_idx ON products USING gin (product_name gin_trgm_ops);
