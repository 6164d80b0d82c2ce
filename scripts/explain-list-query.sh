#!/usr/bin/env bash
# Loads a million products into a scratch database and shows the plans and timings of the
# list query's filter combinations (EXPLAIN ANALYZE), to check the indexes hold up.
# Usage: scripts/explain-list-query.sh   (needs the stack: make stack)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
server=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/catalog}
server=${server%/*}
db=catalog_scale
psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -qc "CREATE DATABASE $db"
POSTGRES_URL="$server/$db" cargo run --quiet --bin api -- migrate >/dev/null
psql "$server/$db" -q <<'SQL'
INSERT INTO users (username, email)
SELECT 'user' || g, 'user' || g || '@example.com' FROM generate_series(1, 1000) g;
-- User 1 owns 200,000 products; the other 800,000 are spread over 999 users.
INSERT INTO products (user_id, product_name, product_description, product_images, product_price)
SELECT CASE WHEN g <= 200000 THEN 1 ELSE 2 + (g % 999) END,
       (ARRAY['Desk lamp','Floor lamp','Chair','Table','Sofa','Shelf','Rug','Mirror'])[1 + g % 8] || ' ' || g,
       'generated', ARRAY['https://images.example.com/' || g || '.jpg'],
       round((random() * 500)::numeric, 2)
FROM generate_series(1, 1000000) g;
ANALYZE users; ANALYZE products;
SQL
cols="id, user_id, product_name, product_price"
run() {
  echo "== $1"
  psql "$server/$db" -Atc "EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) $2" | grep -E "Index|Scan|Sort|Execution Time" | sed 's/^/   /'
}
run "user 1 (200k products), first page"          "SELECT $cols FROM products WHERE user_id = 1 ORDER BY product_price, id LIMIT 21"
run "user 1, price 20-50"                          "SELECT $cols FROM products WHERE user_id = 1 AND product_price >= 20 AND product_price <= 50 ORDER BY product_price, id LIMIT 21"
run "user 1, price 20-50, after a cursor"          "SELECT $cols FROM products WHERE user_id = 1 AND product_price >= 20 AND product_price <= 50 AND (product_price, id) > (35, 0) ORDER BY product_price, id LIMIT 21"
run "user 1, name contains 'lamp 1999'"            "SELECT $cols FROM products WHERE user_id = 1 AND product_name ILIKE '%lamp 1999%' ORDER BY product_price, id LIMIT 21"
run "user 1, name contains 'lamp', price 20-50"    "SELECT $cols FROM products WHERE user_id = 1 AND product_name ILIKE '%lamp%' AND product_price >= 20 AND product_price <= 50 ORDER BY product_price, id LIMIT 21"
run "user 500 (~800 products), name contains 'sofa'" "SELECT $cols FROM products WHERE user_id = 500 AND product_name ILIKE '%sofa%' ORDER BY product_price, id LIMIT 21"
psql "$server/postgres" -qc "DROP DATABASE $db WITH (FORCE)"
