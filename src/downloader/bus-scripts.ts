/**
 * The job bus's Lua scripts. Every state change of a job is one script, so it is atomic; scripts
 * return values (never error replies) for every outcome a caller branches on. Keys are built
 * from the prefix passed as ARGV[1], which is fine for one Redis (plain or behind Sentinel).
 *
 * Layout (P = redis.key_prefix):
 *   P job:<id>      HASH   the record (record.ts)
 *   P aggr:<a>      HASH   limit, proxy, jobs (live download jobs); expires 5 s after jobs = 0
 *   P ready:<a>     ZSET   download jobs of aggregation a, score = due time (ms); delayed retries
 *                          are simply scored in the future
 *   P active        ZSET   aggregations with waiting jobs, score = their earliest due time
 *   P inflight      ZSET   claimed download jobs, score = lease deadline (ms)
 *   P cb:ready      ZSET   callbacks, score = due time
 *   P cb:inflight   ZSET   claimed callbacks, score = lease deadline
 *   P deletions     ZSET   file deletions, score = due time (a claim re-scores it as a lease)
 *   P cb:failed     SET    ids whose callback is Failed
 *   P stats:<c>:<i> STRING stats snapshot of one instance, with a TTL
 *   P doorbell      pub/sub channel: an aggregation got work
 */

/** Shared helpers, prepended to the scripts that need them. */
const TERMINAL = `
local function finish_download(P, id, jk, state, now)
  local aggr = redis.call('HGET', jk, 'aggr')
  redis.call('HSET', jk, 'state', state, 'finished_at', now, 'lease', '')
  local ak = P .. 'aggr:' .. aggr
  if redis.call('EXISTS', ak) == 1 then
    local left = redis.call('HINCRBY', ak, 'jobs', -1)
    if left <= 0 then redis.call('PEXPIRE', ak, 5000) end
  end
  if redis.call('HGET', jk, 'has_cb') == '1' then
    redis.call('HSET', jk, 'cb_state', 'Pending', 'cb_count', 0, 'cb_meta', '')
    redis.call('ZADD', P .. 'cb:ready', now, id)
    redis.call('PUBLISH', P .. 'cb:doorbell', id)
  else
    redis.call('DEL', jk)
  end
end
local function make_ready(P, id, jk, due)
  local aggr = redis.call('HGET', jk, 'aggr')
  redis.call('HSET', jk, 'state', 'Pending', 'lease', '')
  redis.call('ZADD', P .. 'ready:' .. aggr, due, id)
  local cur = redis.call('ZSCORE', P .. 'active', aggr)
  if (not cur) or tonumber(cur) > tonumber(due) then
    redis.call('ZADD', P .. 'active', due, aggr)
  end
  redis.call('PUBLISH', P .. 'doorbell', aggr)
end
`;

/** ARGV: P, aggr, limit, proxy. Returns 1 when created, 0 when it existed. */
export const ENSURE_AGGREGATION = `
local ak = ARGV[1] .. 'aggr:' .. ARGV[2]
if redis.call('EXISTS', ak) == 1 then return 0 end
redis.call('HSET', ak, 'limit', ARGV[3], 'proxy', ARGV[4], 'jobs', 0)
redis.call('PEXPIRE', ak, 5000)
return 1
`;

/** ARGV: P, id, aggr, now, fields… Returns 1, or 0 when the id is taken. */
export const ENQUEUE =
  TERMINAL +
  `
local P, id, aggr, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local jk = P .. 'job:' .. id
if redis.call('EXISTS', jk) == 1 then return 0 end
redis.call('HSET', jk, unpack(ARGV, 5))
local ak = P .. 'aggr:' .. aggr
if redis.call('EXISTS', ak) == 1 then
  redis.call('HINCRBY', ak, 'jobs', 1)
  redis.call('PERSIST', ak)
end
make_ready(P, id, jk, now)
return 1
`;

/**
 * ARGV: P, aggr, now, n, lease deadline, token base. Claims up to n due jobs of one aggregation.
 * Returns {id, token, HGETALL} triples; a missing record gives token ''.
 */
export const CLAIM_DOWNLOADS = `
local P, aggr, now = ARGV[1], ARGV[2], ARGV[3]
local n, deadline, base = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local rk = P .. 'ready:' .. aggr
local ids = redis.call('ZRANGEBYSCORE', rk, '-inf', now, 'LIMIT', 0, n)
local out = {}
for i, id in ipairs(ids) do
  redis.call('ZREM', rk, id)
  local jk = P .. 'job:' .. id
  if redis.call('EXISTS', jk) == 0 then
    table.insert(out, {id, '', {}})
  else
    local token = base .. ':' .. id .. ':' .. redis.call('HINCRBY', jk, 'count', 1)
    redis.call('HSET', jk, 'state', 'InProgress', 'meta', '', 'code', 0, 'lease', token)
    redis.call('ZADD', P .. 'inflight', deadline, id)
    table.insert(out, {id, token, redis.call('HGETALL', jk)})
  end
end
local first = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
if #first == 0 then redis.call('ZREM', P .. 'active', aggr)
else redis.call('ZADD', P .. 'active', first[2], aggr) end
return out
`;

/** ARGV: P, id, token, deadline, kind ('' downloads, 'cb:' callbacks). 1 held, 0 lost. */
export const RENEW = `
local jk = ARGV[1] .. 'job:' .. ARGV[2]
local field = 'lease'
if ARGV[5] == 'cb:' then field = 'cb_lease' end
if redis.call('HGET', jk, field) ~= ARGV[3] then return 0 end
redis.call('ZADD', ARGV[1] .. ARGV[5] .. 'inflight', 'XX', ARGV[4], ARGV[2])
return 1
`;

/**
 * ARGV: P, id, token, now, outcome, due, fields… outcome = success | failed | retry | requeue
 * (requeue does not count the attempt). Returns 1, or 0 when the lease was lost (fencing).
 */
export const FINISH_DOWNLOAD =
  TERMINAL +
  `
local P, id, token, now, outcome, due = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local jk = P .. 'job:' .. id
if redis.call('HGET', jk, 'lease') ~= token then return 0 end
redis.call('ZREM', P .. 'inflight', id)
if #ARGV > 6 then redis.call('HSET', jk, unpack(ARGV, 7)) end
if outcome == 'retry' or outcome == 'requeue' then
  if outcome == 'requeue' then redis.call('HINCRBY', jk, 'count', -1) end
  make_ready(P, id, jk, due)
  return 1
end
if outcome == 'success' then finish_download(P, id, jk, 'Success', now)
else finish_download(P, id, jk, 'Failed', now) end
return 1
`;

/**
 * ARGV: P, now, default max retries, lease-expired message. Reclaims expired download leases:
 * the lost attempt counts; past the last one the job fails. Returns {id, outcome} pairs.
 */
export const RECLAIM_DOWNLOADS =
  TERMINAL +
  `
local P, now, default, msg = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local ids = redis.call('ZRANGEBYSCORE', P .. 'inflight', '-inf', now, 'LIMIT', 0, 100)
local out = {}
for i, id in ipairs(ids) do
  redis.call('ZREM', P .. 'inflight', id)
  local jk = P .. 'job:' .. id
  if redis.call('EXISTS', jk) == 1 then
    local count = tonumber(redis.call('HGET', jk, 'count'))
    local max = tonumber(redis.call('HGET', jk, 'max_retries'))
    if max < 0 then max = default end
    if count > max then
      redis.call('HSET', jk, 'meta', msg, 'download_url', '', 'sha256', '')
      finish_download(P, id, jk, 'Failed', now)
      table.insert(out, {id, 'failed'})
    else
      make_ready(P, id, jk, now)
      table.insert(out, {id, 'ready'})
    end
  end
end
return out
`;

/** ARGV: P, now, n, deadline, token base. Returns {id, token, HGETALL} triples. */
export const CLAIM_CALLBACKS = `
local P, now, n, deadline, base = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local ids = redis.call('ZRANGEBYSCORE', P .. 'cb:ready', '-inf', now, 'LIMIT', 0, n)
local out = {}
for i, id in ipairs(ids) do
  redis.call('ZREM', P .. 'cb:ready', id)
  local jk = P .. 'job:' .. id
  if redis.call('EXISTS', jk) == 0 then
    table.insert(out, {id, '', {}})
  else
    local token = base .. ':' .. id .. ':' .. redis.call('HINCRBY', jk, 'cb_count', 1)
    redis.call('HSET', jk, 'cb_state', 'InProgress', 'cb_meta', '', 'cb_lease', token)
    redis.call('ZADD', P .. 'cb:inflight', deadline, id)
    table.insert(out, {id, token, redis.call('HGETALL', jk)})
  end
end
return out
`;

/**
 * ARGV: P, id, token, now, outcome, due, meta, delete-at. outcome = delivered | retry | failed |
 * requeue. Returns 1, or 0 when the lease was lost.
 */
export const FINISH_CALLBACK = `
local P, id, token, now, outcome, due, meta, delete_at =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local jk = P .. 'job:' .. id
if redis.call('HGET', jk, 'cb_lease') ~= token then return 0 end
redis.call('ZREM', P .. 'cb:inflight', id)
redis.call('HSET', jk, 'cb_lease', '')
if outcome == 'delivered' then
  if redis.call('HGET', jk, 'state') == 'Success' then
    redis.call('ZADD', P .. 'deletions', delete_at, id)
  end
  redis.call('DEL', jk)
  redis.call('SREM', P .. 'cb:failed', id)
elseif outcome == 'failed' then
  redis.call('HSET', jk, 'cb_state', 'Failed', 'cb_meta', meta)
  redis.call('SADD', P .. 'cb:failed', id)
elseif outcome == 'requeue' then
  redis.call('HINCRBY', jk, 'cb_count', -1)
  redis.call('HSET', jk, 'cb_state', 'Pending')
  redis.call('ZADD', P .. 'cb:ready', now, id)
else
  redis.call('HSET', jk, 'cb_state', 'Pending', 'cb_meta', meta)
  redis.call('ZADD', P .. 'cb:ready', due, id)
end
return 1
`;

/** ARGV: P, now. Puts expired callback leases back, uncounted. Returns the ids. */
export const RECLAIM_CALLBACKS = `
local P, now = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', P .. 'cb:inflight', '-inf', now, 'LIMIT', 0, 100)
for i, id in ipairs(ids) do
  redis.call('ZREM', P .. 'cb:inflight', id)
  local jk = P .. 'job:' .. id
  if redis.call('EXISTS', jk) == 1 then
    redis.call('HINCRBY', jk, 'cb_count', -1)
    redis.call('HSET', jk, 'cb_state', 'Pending', 'cb_lease', '')
    redis.call('ZADD', P .. 'cb:ready', now, id)
  end
end
return ids
`;

/**
 * ARGV: P, id, now. The `/retry` reset. Returns {'missing'}, {'state', <state>} or {'ok', queued}.
 */
export const RETRY_CALLBACK = `
local P, id, now = ARGV[1], ARGV[2], ARGV[3]
local jk = P .. 'job:' .. id
if redis.call('EXISTS', jk) == 0 then return {'missing'} end
local state = redis.call('HGET', jk, 'cb_state') or ''
if state ~= 'Failed' then return {'state', state} end
redis.call('HSET', jk, 'cb_count', 0, 'cb_meta', '')
if redis.call('HGET', jk, 'has_cb') ~= '1' then return {'ok', '0'} end
redis.call('HSET', jk, 'cb_state', 'Pending')
redis.call('SREM', P .. 'cb:failed', id)
redis.call('ZADD', P .. 'cb:ready', now, id)
redis.call('PUBLISH', P .. 'cb:doorbell', id)
return {'ok', '1'}
`;

/** ARGV: P, now, n, lease deadline. Claims due deletions by re-scoring them to the deadline. */
export const CLAIM_DELETIONS = `
local P, now, n, deadline = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local ids = redis.call('ZRANGEBYSCORE', P .. 'deletions', '-inf', now, 'LIMIT', 0, n)
for i, id in ipairs(ids) do redis.call('ZADD', P .. 'deletions', deadline, id) end
return ids
`;
