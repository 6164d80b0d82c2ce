//! The Lua scripts that make storing and invalidating atomic in Redis. An entry is a hash:
//! `v` the product version, `b` the response body (absent in an invalidation marker).

/// KEYS[1] = entry; ARGV = version, body, ttl in ms. Stores unless a newer version (entry or
/// marker) is present, or this version is already stored. Returns 1 when stored.
pub const STORE: &str = r"
local current = redis.call('HGET', KEYS[1], 'v')
if current then
  current = tonumber(current)
  local version = tonumber(ARGV[1])
  if current > version then return 0 end
  if current == version and redis.call('HEXISTS', KEYS[1], 'b') == 1 then return 0 end
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'b', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// KEYS[1] = entry; ARGV = new version, ttl in ms. Replaces the entry by a marker holding
/// the highest version seen, so only an entry at least that new can be stored again.
pub const INVALIDATE: &str = r"
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local version = math.max(current, tonumber(ARGV[1]))
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', string.format('%d', version))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";
