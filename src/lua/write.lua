-- write.lua — a guarded write: check one field of a guard hash, then run the
-- plain commands given, all in one atomic call. No rule of npsd lives here:
-- the core computes every command; Redis only needs "check, then write" to
-- be atomic, which a pipeline cannot be.
--
-- EVAL'd, never EVALSHA'd: after a failover, or on a node new to the
-- cluster, the script cache is empty. The C builder (npsd_write.h) sends
-- this body without its comment lines, so they cost nothing on the wire.
--
-- KEYS[1]    the guard hash; KEYS[2..] the other keys the commands touch,
--            all in KEYS[1]'s slot. Every key a command names must be among
--            KEYS: a standalone Redis then refuses what a cluster would.
-- ARGV[1]    mode:
--   "cas"    ARGV[2] field, ARGV[3] expected value ("" = absent), ARGV[4]
--            new value. Field (absent = "") = expected: set it, run the
--            commands, {1}. Else {0, current} (a string); nothing runs.
--   "seq"    ARGV[2] field, ARGV[3] sequence s, 1 .. 2^53 - 1 (ARGV[4]
--            unused). Field (absent = 0) = s - 1: set it to s, run, {1}.
--            >= s: {2, cur}, already applied. Else {0, cur}, a gap
--            (integers). Nothing runs unless {1}.
--   "groups" several accounts' writes behind one fence hash: ARGV[2] "exact",
--            "newer" or "all", ARGV[3], ARGV[4] unused. The commands are
--            split into groups, each opened by the pseudo-command
--            3 GROUP field s: exact runs a group when its field holds s - 1,
--            newer when it holds less than s; either then sets it to s.
--            Returns {3, st...} with per group 1 (ran), 2 (already at s or
--            beyond) or 0 (gap). all: every group must pass as exact does
--            (a field's later group counts on its earlier one), then every
--            command runs, in order, whatever group it follows (the caller
--            summed the groups' increments); if one does not pass, nothing
--            runs, and the groups that would have passed answer 0.
--   "later"  KEYS[1] a key with an expiry: ARGV[3] the new expiry (Unix ms).
--            Runs the commands when the key expires before it (or does not
--            exist): {1}; else {2, its expiry}.
-- ARGV[5..]  the commands, each as its word count n, then its n words, the
--            command's name first: 4 HSET k f v.
-- A bad mode or a malformed or refused command fails the whole call with
-- an error before anything is written. A command Redis itself fails while
-- running (a wrong type, say) leaves the ones before it and the guard
-- written: Redis does not roll a script back. Callers own their key types.

-- Writes only (nothing a caller sends can read or reach another slot):
-- {keys after the name (-1: every word after it), least word count}.
local ALLOWED = {
  HSET = {1, 4}, HSETNX = {1, 4}, HDEL = {1, 3}, HINCRBY = {1, 4},
  DEL = {-1, 2}, SET = {1, 3}, ZADD = {1, 4}, ZREM = {1, 3},
  ZINCRBY = {1, 4}, ZREMRANGEBYSCORE = {1, 4}, SADD = {1, 3},
  SREM = {1, 3}, EXPIRE = {1, 3}, PEXPIRE = {1, 3}, PEXPIREAT = {1, 3},
  LPUSH = {1, 3}, RPUSH = {1, 3}, LTRIM = {1, 4}, PUBLISH = {0, 3},
}
-- unpack() puts every word of a command on Lua's C stack, which holds
-- 8,000 slots (LUAI_MAXCSTACK) at most; the builder splits or refuses
-- longer commands.
local MAX_WORDS = 7000

local function fail(why) return redis.error_reply('ERR write.lua: ' .. why) end

-- Sequences stop at 2^53 - 1, where Lua's numbers (doubles) stop being
-- exact; a longer number rounds to 2^53 or more and is refused.
local function seq_of(v)
  local n = (v == '0' or v:match('^[1-9]%d*$')) and #v <= 16 and tonumber(v)
  return n and n <= 2^53 - 1 and n or nil
end

if #KEYS < 1 or #ARGV < 4 then return fail('needs a guard key and 4 ARGV') end
local declared = {}
for _, k in ipairs(KEYS) do declared[k] = true end

-- Check every command before running any: a refused call changes nothing.
local at, i = {}, 5
while i <= #ARGV do
  local n = ARGV[i]:match('^[1-9]%d?%d?%d?$') and tonumber(ARGV[i])
  if not n or n > MAX_WORDS or i + n > #ARGV then
    return fail('bad word count at ARGV[' .. i .. ']')
  end
  local rule = ALLOWED[string.upper(ARGV[i + 1])]
  if ARGV[1] == 'groups' and ARGV[i + 1] == 'GROUP' then
    rule = {0, 3}
    if n ~= 3 or not seq_of(ARGV[i + 3]) then return fail('bad GROUP') end
  end
  if not rule then return fail('command not allowed: ' .. ARGV[i + 1]) end
  if n < rule[2] then return fail('too few words for ' .. ARGV[i + 1]) end
  local nkeys = rule[1] == -1 and n - 1 or rule[1]
  for k = i + 2, i + 1 + nkeys do
    if not declared[ARGV[k]] then return fail('undeclared key ' .. ARGV[k]) end
  end
  at[#at + 1] = i
  i = i + n + 1
end

local mode, guard, field = ARGV[1], KEYS[1], ARGV[2]
if mode == 'cas' then
  local cur = redis.call('HGET', guard, field) or ''
  if cur ~= ARGV[3] then return {0, cur} end
  -- The guard is written first: under maxmemory Redis refuses a script's
  -- first write only, so an out-of-memory call changes nothing.
  redis.call('HSET', guard, field, ARGV[4])
elseif mode == 'groups' and ARGV[2] == 'all' then
  -- all or nothing: the fences first, the commands only if every one passes
  local seen, out, pass = {}, {3}, true
  for _, j in ipairs(at) do
    if ARGV[j + 1] == 'GROUP' then
      local f, s = ARGV[j + 2], seq_of(ARGV[j + 3])
      local cur = seen[f]
      if cur then cur = seq_of(cur)
      else cur = seq_of(redis.call('HGET', guard, f) or '0') or 0 end
      if cur >= s then out[#out + 1] = 2; pass = false
      elseif cur == s - 1 then out[#out + 1] = 1; seen[f] = ARGV[j + 3]
      else out[#out + 1] = 0; pass = false end
    end
  end
  if not pass then
    for k = 2, #out do if out[k] == 1 then out[k] = 0 end end
    return out
  end
  local set = {'HSET', guard}
  for f, s in pairs(seen) do set[#set + 1] = f; set[#set + 1] = s end
  if #set > 2 then redis.call(unpack(set)) end
  for _, j in ipairs(at) do
    if ARGV[j + 1] ~= 'GROUP' then
      redis.call(unpack(ARGV, j + 1, j + tonumber(ARGV[j])))
    end
  end
  return out
elseif mode == 'groups' then
  -- one fence per group: the commands after a GROUP run only when it
  -- passes. Increments commute and set additions repeat harmlessly, so the
  -- passing groups' HINCRBY and SADD of one key and field are summed and
  -- sent once, at the end (many accounts bump the same counters).
  local newer, out, run = ARGV[2] == 'newer', {3}, false
  local incr, adds = {}, {}
  for _, j in ipairs(at) do
    local name = ARGV[j + 1]
    if name == 'GROUP' then
      local f, s = ARGV[j + 2], seq_of(ARGV[j + 3])
      local cur = seq_of(redis.call('HGET', guard, f) or '0') or 0
      if cur >= s then out[#out + 1] = 2; run = false
      elseif newer or cur == s - 1 then
        redis.call('HSET', guard, f, ARGV[j + 3])
        out[#out + 1] = 1; run = true
      else out[#out + 1] = 0; run = false end
    elseif run and name == 'HINCRBY' and ARGV[j] == '4' and
           tonumber(ARGV[j + 4]) then
      local h = incr[ARGV[j + 2]]
      if not h then h = {}; incr[ARGV[j + 2]] = h end
      h[ARGV[j + 3]] = (h[ARGV[j + 3]] or 0) + tonumber(ARGV[j + 4])
    elseif run and name == 'SADD' and ARGV[j] == '3' then
      local m = adds[ARGV[j + 2]]
      if not m then m = {}; adds[ARGV[j + 2]] = m end
      m[ARGV[j + 3]] = true
    elseif run then
      redis.call(unpack(ARGV, j + 1, j + tonumber(ARGV[j])))
    end
  end
  for k, h in pairs(incr) do
    for f, by in pairs(h) do
      if by ~= 0 then redis.call('HINCRBY', k, f, by) end
    end
  end
  for k, m in pairs(adds) do
    for v in pairs(m) do redis.call('SADD', k, v) end
  end
  return out
elseif mode == 'later' then
  local t = seq_of(ARGV[3])
  if not t then return fail('bad expiry ' .. ARGV[3]) end
  local cur = redis.call('PEXPIRETIME', guard)
  if cur >= t then return {2, cur} end
elseif mode == 'seq' then
  local s = seq_of(ARGV[3])
  if not s or s < 1 then return fail('bad sequence ' .. ARGV[3]) end
  local raw = redis.call('HGET', guard, field) or '0'
  local cur = seq_of(raw)
  if not cur then return fail('fence ' .. field .. ' holds ' .. raw) end
  if cur >= s then return {2, cur} end
  if cur ~= s - 1 then return {0, cur} end
  redis.call('HSET', guard, field, ARGV[3])
else
  return fail('unknown mode ' .. tostring(mode))
end
for _, j in ipairs(at) do
  redis.call(unpack(ARGV, j + 1, j + tonumber(ARGV[j])))
end
return {1}
