-- apply.lua — every state change npsd makes, each call atomic.
--
-- Account modes, called once per account per poll batch (never once per
-- message):
--   "responses": count new survey responses (deduplicated by event_id),
--   "context":   store the account's latest context record,
--   "refresh":   recompute the account's windows (a day rolled over).
-- After any change the account's derived views are rewritten from its day
-- buckets (windows, summary, rank) and the change is announced on pub/sub.
-- Global modes, once per batch or timer tick:
--   "cohorts":   recompute up to ARGV[7] dirty cohort / theme views,
--   "due":       list up to ARGV[7] accounts whose windows must roll now.
-- One file holds them all so that the NPS arithmetic exists once in Lua.
--
-- KEYS[1]  <prefix>:{<account>}:summary (declares the account's slot), or
--          <prefix>:dirty for the global modes
-- ARGV[1]  prefix        ARGV[2] account id     ARGV[3] now (epoch ms)
-- ARGV[4]  today (epoch day)                    ARGV[5] config (JSON)
-- ARGV[6]  mode          ARGV[7..] mode arguments:
--   responses: n, then per response FIELDS_PER_RESPONSE values:
--     event_id user_id score day ts_ms ts_str role survey language channel
--     themes(comma list) attrs("k\tv\n" pairs) comment
--   context:   updated_at_ms (-1 = none), then field, value pairs
--   refresh:   nothing
-- Returns for "responses": a flat array {status, snapshot, ...} per response
-- (status 1 = counted now, 0 = duplicate; snapshot = the JSON record of the
-- response's metrics as counted, or false when it has expired); for the other
-- modes 1 when state changed, 0 when the record was older than the stored one.
--
-- Day buckets (hash <prefix>:{A}:d): field "<day>:<slot>" -> count, slot =
-- slice * 3 + category, slices: all relationship transactional end_user admin
-- decision_maker other; categories: detractor passive promoter. Cohorts use
-- the same layout under <prefix>:cohort:<dim>:<value>:d.

local P, A = ARGV[1], ARGV[2]
local now, today = tonumber(ARGV[3]), tonumber(ARGV[4])
local C = cjson.decode(ARGV[5])
local mode = ARGV[6]
local base = P .. ':{' .. A .. '}:'
local NSLOT = 21
local SLICES = {'all', 'relationship', 'transactional', 'end_user', 'admin',
                'decision_maker', 'other'}
local ROLES = {'end_user', 'admin', 'decision_maker', 'other'}
local SURVEYS = {'relationship', 'transactional'}
local CATS = {'detractor', 'passive', 'promoter'}
local FIELDS_PER_RESPONSE = 13
local L = C.long                 -- long window (days): trend, gap, benchmark
local oldest = today - 2 * L + 1 -- first day any window or the previous
                                 -- period of the long window still needs

-- One decimal, half away from zero, never "-0"; "30" rather than "30.0".
-- Mirrors npsd_round1()/npsd_metric_format() in src/npsd_nps.c.
local function round1(x)
  local r
  if x < 0 then r = -math.floor(-x * 10 + 0.5) / 10
  else r = math.floor(x * 10 + 0.5) / 10 end
  if r == 0 then r = 0 end
  return r
end
local function fmt(x)
  local s = string.format('%.1f', x)
  if string.sub(s, -2) == '.0' then s = string.sub(s, 1, -3) end
  if s == '-0' then s = '0' end
  return s
end

-- 100 * (p - d) / n to one decimal, half away from zero, in integers so
-- that a value exactly on .x5 rounds as npsd_nps_compute() does in C.
local function nps_exact(diff, n)
  local num = 1000 * math.abs(diff)
  local q = math.floor(num / n)
  if 2 * (num - q * n) >= n then q = q + 1 end
  if q == 0 then return 0 end
  if diff < 0 then q = -q end
  return q / 10
end

-- NPS, margin of error and adjusted-Wald interval of one slice (SPEC §4).
local function nps_of(p, s, d)
  local n = p + s + d
  if n == 0 then return nil end
  local r = {n = n, p = p, s = s, d = d}
  r.nps = nps_exact(p - d, n)
  local ps, ds = p / n, d / n
  local v = ps + ds - (ps - ds) ^ 2
  if v < 0 then v = 0 end
  r.moe = round1(1.96 * 100 * math.sqrt(v / n))
  local n2 = n + 3
  local p2, d2 = (p + 0.75) / n2, (d + 0.75) / n2
  local v2 = p2 + d2 - (p2 - d2) ^ 2
  if v2 < 0 then v2 = 0 end
  local half = 1.96 * math.sqrt(v2 / n2)
  local lo, hi = 100 * ((p2 - d2) - half), 100 * ((p2 - d2) + half)
  if lo < -100 then lo = -100 end
  if hi > 100 then hi = 100 end
  r.ci_low, r.ci_high = round1(lo), round1(hi)
  r.low_confidence = (n < C.low_conf_n) and 1 or 0
  return r
end

local function zero_totals()
  local t = {}
  for i = 1, NSLOT do t[i] = 0 end
  return t
end

-- Window totals from a bucket hash's HGETALL reply: tot[window index] and
-- prev (the period before the long window), each an array of NSLOT counts.
-- Returns the totals and the list of fields too old to matter any more.
local function totals_from(flat)
  local tot, prev, stale = {}, zero_totals(), {}
  for wi = 1, #C.windows do tot[wi] = zero_totals() end
  for i = 1, #flat, 2 do
    local f = flat[i]
    local sep = string.find(f, ':', 1, true)
    local day = tonumber(string.sub(f, 1, sep - 1))
    local slot = tonumber(string.sub(f, sep + 1)) + 1
    local cnt = tonumber(flat[i + 1])
    if day < oldest then
      stale[#stale + 1] = f
    else
      for wi, w in ipairs(C.windows) do
        if day <= today and day > today - w then
          tot[wi][slot] = tot[wi][slot] + cnt
        end
      end
      if day <= today - L and day > today - 2 * L then
        prev[slot] = prev[slot] + cnt
      end
    end
  end
  return tot, prev, stale
end

local function slice_nps(t, si)
  local o = (si - 1) * 3
  return nps_of(t[o + 3], t[o + 2], t[o + 1])
end

local FIELDS = {'responses', 'promoters', 'passives', 'detractors', 'nps',
                'moe', 'ci_low', 'ci_high', 'low_confidence'}
local function fields_of(r)
  return {r.n, r.p, r.s, r.d, fmt(r.nps), fmt(r.moe), fmt(r.ci_low),
          fmt(r.ci_high), r.low_confidence}
end

-- Rewrites one window hash from totals: absent slices leave no field.
local function write_window(key, t)
  local args = {}
  for si, name in ipairs(SLICES) do
    local r = slice_nps(t, si)
    if r then
      local pre = (si == 1) and '' or (name .. '.')
      local vals = fields_of(r)
      for fi, f in ipairs(FIELDS) do
        args[#args + 1] = pre .. f
        args[#args + 1] = vals[fi]
      end
    end
  end
  redis.call('DEL', key)
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

local function wname(w) return w .. 'd' end
local function long_index()
  for wi, w in ipairs(C.windows) do if w == L then return wi end end
end

local function hgetall_map(key)
  local flat = redis.call('HGETALL', key)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end

-- The account's metrics from window totals (SPEC §4), as numbers; nil
-- members are absent. Derived values use the published one-decimal NPS so
-- that a reader of the hashes can redo the arithmetic.
local function metrics_of(tot, prev, acct, summary)
  local m = {}
  for wi, w in ipairs(C.windows) do
    local r = slice_nps(tot[wi], 1)
    if r then m['nps_' .. wname(w)] = r.nps end
  end
  local lt = tot[long_index()]
  local all = slice_nps(lt, 1)
  local Ls = wname(L)
  m['responses_' .. Ls] = all and all.n or 0
  if all then m['moe_' .. Ls] = all.moe end
  local pr = slice_nps(prev, 1)
  if pr then m['nps_prev_' .. Ls] = pr.nps end
  if all and pr then m['trend_' .. Ls] = round1(all.nps - pr.nps) end
  local eu, dm = slice_nps(lt, 4), slice_nps(lt, 6)
  m.role_gap_flag = 0
  if eu and dm then
    local gap = round1(eu.nps - dm.nps)
    m['role_gap_' .. Ls] = gap
    if math.abs(gap) > C.gap_threshold and eu.n >= C.gap_min and
       dm.n >= C.gap_min then
      m.role_gap_flag = 1
    end
  end
  local bench = C.benchmark[acct.segment or ''] or C.benchmark.all
  m.benchmark = bench
  if all then m.benchmark_delta = round1(all.nps - bench) end
  if summary.health then m.health = tonumber(summary.health) end
  if summary.health_band then m.health_band = summary.health_band end
  return m
end

-- Summary fields this script owns; anything else in the hash (health, usage)
-- belongs to other writers and is left alone.
local function owned_fields()
  local f = {}
  for _, w in ipairs(C.windows) do f[#f + 1] = 'nps_' .. wname(w) end
  local Ls = wname(L)
  for _, n in ipairs({'responses_', 'moe_', 'nps_prev_', 'trend_',
                      'role_gap_'}) do
    f[#f + 1] = n .. Ls
  end
  f[#f + 1] = 'role_gap_flag'
  f[#f + 1] = 'benchmark'
  f[#f + 1] = 'benchmark_delta'
  return f
end

local function num_str(v)
  if type(v) == 'number' then
    if v == math.floor(v) and math.abs(v) < 1e15 then
      return string.format('%d', v)
    end
    return fmt(v)
  end
  return v
end

-- The earliest instant at which one of the account's windows changes with
-- no new event: a bucket leaving a window or the previous period, or a
-- future-dated bucket entering. Scheduled in <prefix>:roll.
local function next_roll(flat)
  local best = nil
  local function cand(d)
    if d > today and (best == nil or d < best) then best = d end
  end
  for i = 1, #flat, 2 do
    local f = flat[i]
    local day = tonumber(string.sub(f, 1, string.find(f, ':', 1, true) - 1))
    if day >= oldest then
      cand(day)
      for _, w in ipairs(C.windows) do cand(day + w) end
      cand(day + L)
      cand(day + 2 * L)
    end
  end
  return best
end

-- Rewrites the account's derived keys from its buckets and announces it.
local function rewrite(acct, meta, updated_ms)
  local flat = redis.call('HGETALL', base .. 'd')
  local tot, prev, stale = totals_from(flat)
  if #stale > 0 then redis.call('HDEL', base .. 'd', unpack(stale)) end
  for wi, w in ipairs(C.windows) do
    write_window(base .. 'w:' .. wname(w), tot[wi])
  end
  local skey = base .. 'summary'
  local summary = hgetall_map(skey)
  local m = metrics_of(tot, prev, acct, summary)
  local set, del = {}, {}
  for _, f in ipairs(owned_fields()) do
    if m[f] ~= nil then
      set[#set + 1] = f
      set[#set + 1] = num_str(m[f])
    else
      del[#del + 1] = f
    end
  end
  if meta.last_response_at then
    set[#set + 1] = 'last_response_at'
    set[#set + 1] = meta.last_response_at
    set[#set + 1] = 'last_score'
    set[#set + 1] = meta.last_score
  end
  set[#set + 1] = 'updated_at'
  set[#set + 1] = C.now_str
  if #del > 0 then redis.call('HDEL', skey, unpack(del)) end
  redis.call('HSET', skey, unpack(set))

  local npsL = m['nps_' .. wname(L)]
  if npsL ~= nil then
    redis.call('ZADD', P .. ':rank:nps_' .. wname(L), npsL, A)
  else
    redis.call('ZREM', P .. ':rank:nps_' .. wname(L), A)
  end
  local nr = next_roll(flat)
  if nr then
    -- a minute past midnight UTC of the day the windows change
    redis.call('ZADD', P .. ':roll', nr * 86400000 + 60000, A)
  else
    redis.call('ZREM', P .. ':roll', A)
  end
  local ev = {account_id = A, updated_at = C.now_str}
  ev['nps_' .. wname(L)] = npsL
  ev.health = summary.health and tonumber(summary.health) or nil
  ev.health_band = summary.health_band
  redis.call('PUBLISH', P .. ':events', cjson.encode(ev))
  return tot, prev, m
end

-- Recomputes a cohort's window hashes, or a category's theme rankings,
-- from their day buckets; both are derived views, so doing it twice is
-- harmless (several instances may).
local function refresh_view(name)
  if string.sub(name, 1, 7) == 'themes:' then
    local cat = string.sub(name, 8)
    local tk = P .. ':themes:' .. cat
    local flat = redis.call('HGETALL', tk .. ':d')
    local counts, stale = {}, {}
    for wi = 1, #C.windows do counts[wi] = {} end
    for i = 1, #flat, 2 do
      local f = flat[i]
      local sep = string.find(f, ':', 1, true)
      local day, th = tonumber(string.sub(f, 1, sep - 1)), string.sub(f, sep + 1)
      if day < oldest then stale[#stale + 1] = f end
      for wi, w in ipairs(C.windows) do
        if day <= today and day > today - w then
          counts[wi][th] = (counts[wi][th] or 0) + tonumber(flat[i + 1])
        end
      end
    end
    if #stale > 0 then redis.call('HDEL', tk .. ':d', unpack(stale)) end
    for wi, w in ipairs(C.windows) do
      local key = tk .. ':w:' .. wname(w)
      redis.call('DEL', key)
      local z = {}
      for th, c in pairs(counts[wi]) do z[#z + 1] = c; z[#z + 1] = th end
      if #z > 0 then redis.call('ZADD', key, unpack(z)) end
    end
    return
  end
  local ck = P .. ':cohort:' .. name
  local tot, _, stale = totals_from(redis.call('HGETALL', ck .. ':d'))
  if #stale > 0 then redis.call('HDEL', ck .. ':d', unpack(stale)) end
  for wi, w in ipairs(C.windows) do
    write_window(ck .. ':w:' .. wname(w), tot[wi])
  end
end

if mode == 'cohorts' then
  -- a new day: every cohort and theme view rolls
  local rolled = tonumber(redis.call('GET', P .. ':rolled_day') or '-1')
  if rolled < today then
    redis.call('SUNIONSTORE', P .. ':dirty', P .. ':dirty', P .. ':cohorts')
    redis.call('SADD', P .. ':dirty', 'themes:detractor', 'themes:passive',
               'themes:promoter')
    redis.call('SET', P .. ':rolled_day', today)
  end
  local names = redis.call('SPOP', P .. ':dirty', tonumber(ARGV[7]))
  for _, name in ipairs(names) do refresh_view(name) end
  return redis.call('SCARD', P .. ':dirty')
end

if mode == 'due' then
  return redis.call('ZRANGEBYSCORE', P .. ':roll', '-inf', now, 'LIMIT', 0,
                    tonumber(ARGV[7]))
end

local acct = hgetall_map(base .. 'account')
local meta = hgetall_map(base .. 'meta')

if mode == 'refresh' then
  rewrite(acct, meta)
  return 1
end

if mode == 'context' then
  local upd = tonumber(ARGV[7])
  local stored = tonumber(meta.context_updated_ms or '-1')
  if upd >= 0 and stored >= 0 and upd < stored then return 0 end
  redis.call('DEL', base .. 'account')
  local kv = {}
  for i = 8, #ARGV do kv[#kv + 1] = ARGV[i] end
  if #kv > 0 then redis.call('HSET', base .. 'account', unpack(kv)) end
  if upd >= 0 then
    redis.call('HSET', base .. 'meta', 'context_updated_ms', upd)
  end
  acct = hgetall_map(base .. 'account')
  rewrite(acct, meta)
  return 1
end

-- mode == 'responses'
local n = tonumber(ARGV[7])
local out = {}
local dkey = base .. 'd'
local flat = redis.call('HGETALL', dkey)
local tot, prev = totals_from(flat)
local recent_key = base .. 'recent'
local recent = redis.call('LRANGE', recent_key, 0, C.previous - 1)
local pushed = {}
local counted = 0
local Ls = wname(L)
local summary = hgetall_map(base .. 'summary')

-- Increments are summed here and written once per field at the end, so a
-- batch with many responses of one account costs one HINCRBY per bucket.
local incr, dirty = {}, {}
local function add(key, field)
  local h = incr[key]
  if not h then h = {}; incr[key] = h end
  h[field] = (h[field] or 0) + 1
end
local function cohort_add(dim, val, day, slots)
  if val == nil or val == '' then return end
  local name = dim .. ':' .. val
  local ck = P .. ':cohort:' .. name .. ':d'
  for _, s in ipairs(slots) do add(ck, day .. ':' .. s) end
  dirty[name] = true
end

for i = 0, n - 1 do
  local o = 8 + i * FIELDS_PER_RESPONSE
  local eid, uid = ARGV[o], ARGV[o + 1]
  local score, day = tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  local ts_ms, ts_str = tonumber(ARGV[o + 4]), ARGV[o + 5]
  local role, survey = tonumber(ARGV[o + 6]), tonumber(ARGV[o + 7])
  local lang, chan, themes = ARGV[o + 8], ARGV[o + 9], ARGV[o + 10]
  local attrs, comment = ARGV[o + 11], ARGV[o + 12]
  local evkey = base .. 'ev:' .. eid
  local outkey = base .. 'out:' .. eid
  if not redis.call('SET', evkey, '1', 'NX', 'EX', C.dedupe_ttl) then
    out[#out + 1] = 0
    out[#out + 1] = redis.call('GET', outkey)
  else
    counted = counted + 1
    local cat = (score >= 9) and 2 or ((score >= 7) and 1 or 0)
    local slots = {cat, (1 + survey) * 3 + cat, (3 + role) * 3 + cat}
    if day >= oldest then
      for _, s in ipairs(slots) do
        add(dkey, day .. ':' .. s)
        for wi, w in ipairs(C.windows) do
          if day <= today and day > today - w then
            tot[wi][s + 1] = tot[wi][s + 1] + 1
          end
        end
        if day <= today - L and day > today - 2 * L then
          prev[s + 1] = prev[s + 1] + 1
        end
      end
      cohort_add('all', 'all', day, slots)
      cohort_add('segment', acct.segment, day, slots)
      cohort_add('plan', acct.plan, day, slots)
      cohort_add('lifecycle_stage', acct.lifecycle_stage, day, slots)
      cohort_add('language', lang, day, slots)
      cohort_add('channel', chan, day, slots)
      cohort_add('survey_type', SURVEYS[survey + 1], day, slots)
      cohort_add('role', ROLES[role + 1], day, slots)
      for k, v in string.gmatch(attrs, '([^\t\n]+)\t([^\n]*)\n') do
        cohort_add(k, v, day, slots)
      end
      for th in string.gmatch(themes, '[^,]+') do
        add(P .. ':themes:' .. CATS[cat + 1] .. ':d', day .. ':' .. th)
        dirty['themes:' .. CATS[cat + 1]] = true
      end
    end
    -- survey senders skip users surveyed within the suppression period
    local ttl = math.floor((ts_ms + C.suppress_ms - now) / 1000)
    if ttl > 0 then
      local skey = P .. ':suppress:' .. uid
      local cur = redis.call('TTL', skey)
      if cur < ttl then redis.call('SET', skey, ts_str, 'EX', ttl) end
    end
    local last = tonumber(meta.last_response_ms or '-1')
    if ts_ms >= last then
      meta.last_response_ms = tostring(ts_ms)
      meta.last_response_at = ts_str
      meta.last_score = tostring(score)
    end
    -- the snapshot: this response's account view as of its counting
    local m = metrics_of(tot, prev, acct, summary)
    local previous = {}
    for j = #pushed, 1, -1 do
      if #previous < C.previous then
        previous[#previous + 1] = cjson.decode(pushed[j])
      end
    end
    for _, r in ipairs(recent) do
      if #previous < C.previous then
        previous[#previous + 1] = cjson.decode(r)
      end
    end
    local snap = cjson.encode({processed_at = now, metrics = m,
                               account = acct, previous = previous})
    redis.call('SET', outkey, snap, 'EX', C.replay_ttl)
    local me = {score = score, role = ROLES[role + 1], submitted_at = ts_str}
    if comment ~= '' then me.comment = comment end
    pushed[#pushed + 1] = cjson.encode(me)
    out[#out + 1] = 1
    out[#out + 1] = snap
  end
end

if counted > 0 then
  for key, h in pairs(incr) do
    for field, by in pairs(h) do redis.call('HINCRBY', key, field, by) end
  end
  local names = {}
  for name in pairs(dirty) do names[#names + 1] = name end
  if #names > 0 then
    redis.call('SADD', P .. ':dirty', unpack(names))
    local cohorts = {}
    for _, nm in ipairs(names) do
      if string.sub(nm, 1, 7) ~= 'themes:' then cohorts[#cohorts + 1] = nm end
    end
    if #cohorts > 0 then redis.call('SADD', P .. ':cohorts', unpack(cohorts)) end
  end
  if C.previous > 0 then
    redis.call('LPUSH', recent_key, unpack(pushed))
    redis.call('LTRIM', recent_key, 0, C.previous - 1)
  end
  if meta.last_response_ms then
    redis.call('HSET', base .. 'meta', 'last_response_ms',
               meta.last_response_ms, 'last_response_at',
               meta.last_response_at, 'last_score', meta.last_score)
  end
  rewrite(acct, meta)
end
return out
