-- apply.lua — every state change npsd makes, each call atomic.
--
-- Account modes, called once per account per poll batch (never once per
-- message) or per timer tick:
--   "responses": count new survey responses (deduplicated by event_id),
--                open a closed-loop record for each detractor,
--   "context":   store the account's latest context record,
--   "usage":     count product-usage events (deduplicated for 3 days),
--   "followups": apply follow-up actions to the detractors' loops,
--   "tick":      act on the loop deadlines that passed (timer),
--   "refresh":   recompute the account's windows (a day rolled over).
-- After any change the account's derived views are rewritten (windows,
-- summary with health, ranks), edge-triggered alerts are checked and put in
-- the outbox, and the change is announced on pub/sub.
-- Global modes, once per timer tick:
--   "cohorts":   sum the queued cohort contributions, recompute up to
--                ARGV[7] dirty cohort / theme views,
--   "due":       list up to ARGV[7] accounts whose windows must roll now,
--   "loops_due": list up to ARGV[7] loop deadlines that passed.
-- One file holds them all so that each formula exists once in Lua; the C
-- modules npsd_nps, npsd_health, npsd_alert and npsd_loop are the reference
-- the unit tests pin.
--
-- KEYS[1]  <prefix>:{<account>}:summary (declares the account's slot), or
--          a global key for the global modes
-- ARGV[1]  prefix        ARGV[2] account id     ARGV[3] now (epoch ms)
-- ARGV[4]  today (epoch day)                    ARGV[5] config (JSON)
-- ARGV[6]  mode          ARGV[7..] mode arguments:
--   responses: n, then per response FIELDS_PER_RESPONSE values:
--     event_id user_id score day ts_ms ts_str role survey language channel
--     themes(comma list) attrs("k\tv\n" pairs) comment payload_digest
--   context:   updated_at_ms (-1 = none), then field, value pairs
--   usage:     n, then per event: event_id user_id day type feature ts_ms
--              ts_str
--   followups: n, then per follow-up: event_id response_event_id action
--              at_ms at_str
--   tick:      response_event_id stage pairs
--   refresh:   nothing
-- Returns for "responses": a flat array {status, snapshot, ...} per response
-- (status 1 = counted now, 0 = duplicate; snapshot = the JSON record of the
-- response as counted, or false when it has expired); "followups": a status
-- per follow-up; the other account modes: 1 when state changed, else 0.
--
-- Day buckets (hash <prefix>:{A}:d): field "<day>:<slot>" -> count, slot =
-- slice * 3 + category, slices: all relationship transactional end_user admin
-- decision_maker other; categories: detractor passive promoter. Cohorts use
-- the same layout under <prefix>:cohort:<dim>:<value>:d.

local P, A = ARGV[1], ARGV[2]
local now, today = tonumber(ARGV[3]), tonumber(ARGV[4])
local C = cjson.decode(ARGV[5])
-- A digest of the settings behind the account views other than the window
-- totals (benchmarks, role gap, health weights and bands, alert
-- thresholds): the shortcuts that rewrite only health, or nothing, are
-- taken only while the views were last fully written under the same
-- settings (<prefix>:{A}:meta "vcfg").
local vcfg_value
local function vcfg()
  if not vcfg_value then
    vcfg_value = string.sub(redis.sha1hex(
      (string.gsub(ARGV[5], '"now_str":"[^"]*",', ''))), 1, 16)
  end
  return vcfg_value
end
local mode = ARGV[6]
local base = P .. ':{' .. A .. '}:'
local NSLOT = 21
local SLICES = {'all', 'relationship', 'transactional', 'end_user', 'admin',
                'decision_maker', 'other'}
local ROLES = {'end_user', 'admin', 'decision_maker', 'other'}
local SURVEYS = {'relationship', 'transactional'}
local CATS = {'detractor', 'passive', 'promoter'}
local FIELDS_PER_RESPONSE = 14
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

-- RFC 3339 UTC of epoch ms, as npsd_time_format() writes it (civil date
-- from days: H. Hinnant's algorithm; Redis' Lua has no os.date).
local function iso(ms)
  local secs = math.floor(ms / 1000)
  local frac = ms - secs * 1000
  local z = math.floor(secs / 86400)
  local sod = secs - z * 86400
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = (mp < 10) and (mp + 3) or (mp - 9)
  if m <= 2 then y = y + 1 end
  local t = string.format('%04d-%02d-%02dT%02d:%02d:%02d', y, m, d,
                          math.floor(sod / 3600), math.floor(sod % 3600 / 60), sod % 60)
  if frac ~= 0 then t = t .. string.format('.%03d', frac) end
  return t .. 'Z'
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

-- Periods: windows 1..W, and W + 1 = the period before the long window.
local W = #C.windows
local PREV = W + 1
local function periods_of(day)
  local ps = {}
  if day <= today then
    for wi, w in ipairs(C.windows) do
      if day > today - w then ps[#ps + 1] = wi end
    end
    if day <= today - L and day > today - 2 * L then ps[#ps + 1] = PREV end
  end
  return ps
end

-- Period totals T[period][slot] from a bucket hash's HGETALL reply, and the
-- fields too old to matter any more.
local function totals_from(flat)
  local T, stale = {}, {}
  for pi = 1, PREV do T[pi] = zero_totals() end
  for i = 1, #flat, 2 do
    local f = flat[i]
    local sep = string.find(f, ':', 1, true)
    local day = tonumber(string.sub(f, 1, sep - 1))
    if day < oldest then
      stale[#stale + 1] = f
    else
      local slot = tonumber(string.sub(f, sep + 1)) + 1
      local cnt = tonumber(flat[i + 1])
      for _, pi in ipairs(periods_of(day)) do
        T[pi][slot] = T[pi][slot] + cnt
      end
    end
  end
  return T, stale
end

-- The totals cache (<key>:t): a string, the JSON array [SIG, counts...]
-- with NSLOT counts per period (windows, then the previous period). Valid
-- for one day and one window configuration; summing the day buckets (up to
-- 2 x long window days x 21 fields) happens only when it is not, so the
-- per-batch cost does not grow with history. One GET and cjson.decode cost
-- about 8 us where a hash of fields cost 40 to 60 us of parsing. The window
-- hashes are a function of these totals and low_conf_n: while the cache is
-- valid they are current, and a call that does not change the totals
-- leaves them.
local SIG = today .. '/' .. table.concat(C.windows, ',') .. '/' .. L .. '/' ..
            C.low_conf_n

local function totals_store(tk, T)
  local a = {SIG}
  for pi = 1, PREV do
    for sl = 1, NSLOT do a[#a + 1] = T[pi][sl] end
  end
  redis.call('SET', tk, cjson.encode(a))
end

-- Returns the totals of a bucket hash bk, from the cache tk when it is
-- current (force = false), else recomputed and cached; the second value is
-- the bucket reply when a recomputation happened (for the roll schedule).
local function totals_load(bk, tk, force)
  if not force then
    -- pcall: a cache of another shape (WRONGTYPE) is only a stale cache
    local raw = redis.pcall('GET', tk)
    if type(raw) == 'string' then
      local ok, a = pcall(cjson.decode, raw)
      if ok and type(a) == 'table' and a[1] == SIG and
         #a == 1 + PREV * NSLOT then
        local T, k = {}, 1
        for pi = 1, PREV do
          local t = {}
          for sl = 1, NSLOT do k = k + 1; t[sl] = a[k] end
          T[pi] = t
        end
        return T, nil
      end
    end
  end
  local flat = redis.call('HGETALL', bk)
  local T, stale = totals_from(flat)
  if #stale > 0 then redis.call('HDEL', bk, unpack(stale)) end
  totals_store(tk, T)
  return T, flat
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

local function wname(w) return w .. 'd' end

-- Writes one window hash from totals t: the whole hash (absent slices leave
-- no field) when old is nil, else only the slices whose counts differ from
-- old. Only counting passes old, and counts only grow there, so no slice
-- disappears: writing a slice costs about 20 us of Lua, and a response
-- changes three of seven.
local function write_window(key, t, old)
  -- a hash lost behind the cache's back (deleted, evicted) is rebuilt
  if old and redis.call('EXISTS', key) == 0 then old = nil end
  local args = {}
  for si, name in ipairs(SLICES) do
    local o = (si - 1) * 3
    if not old or old[o + 1] ~= t[o + 1] or old[o + 2] ~= t[o + 2] or
       old[o + 3] ~= t[o + 3] then
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
  end
  if not old then redis.call('DEL', key) end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

-- Every window hash <prefix>w:<window> of totals T; old: nil (whole
-- hashes) or the totals before this call's counting (see write_window()).
local function write_windows(prefix, T, old)
  for wi, w in ipairs(C.windows) do
    write_window(prefix .. 'w:' .. wname(w), T[wi], old and old[wi])
  end
end

-- A copy of the first n periods of totals T.
local function totals_copy(T, n)
  local c = {}
  for pi = 1, n do
    c[pi] = {}
    for sl = 1, NSLOT do c[pi][sl] = T[pi][sl] end
  end
  return c
end

local function long_index()
  for wi, w in ipairs(C.windows) do if w == L then return wi end end
end

local function hgetall_map(key)
  local flat = redis.call('HGETALL', key)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end

-- Dedupe markers of responses (kind "ev") and follow-ups ("fev"): one hash
-- per account per DEDUPE_PERIOD days, <kind>p:<period>, field = event id,
-- the whole hash expiring dedupe.days after its period ends. A top-level
-- key per event, as earlier versions kept (<kind>:<event_id>, a string
-- with a TTL), costs about 140 bytes of Redis memory with its dictionary
-- and expiry entries; a field of a small hash about 30. An event is a
-- duplicate when the current period's hash, an earlier one that can still
-- hold a marker younger than dedupe.days, or an earlier version's marker
-- has it. Periods follow Redis's clock (TIME), not npsd's: instances whose
-- clocks differ, or a clock pinned for a backfill, must agree on which
-- hash is current, and Redis expires the hashes by its own clock.
local DEDUPE_PERIOD = 100
local dedupe_period_value
local function dedupe_period()
  if not dedupe_period_value then
    local t = redis.call('TIME')
    dedupe_period_value = math.floor(tonumber(t[1]) / (DEDUPE_PERIOD * 86400))
  end
  return dedupe_period_value
end
local dedupe_older = {}
local function dedupe_key(kind, period)
  return base .. kind .. 'p:' .. period
end
-- the earlier periods' hashes that exist, looked up once per call
local function dedupe_older_keys(kind)
  local ks = dedupe_older[kind]
  if ks then return ks end
  ks = {}
  local p = dedupe_period()
  local back = math.ceil(C.dedupe_ttl / (DEDUPE_PERIOD * 86400))
  for q = p - 1, p - back, -1 do
    local k = dedupe_key(kind, q)
    if redis.call('EXISTS', k) == 1 then ks[#ks + 1] = k end
  end
  dedupe_older[kind] = ks
  return ks
end
local function dedupe_seen_before(kind, id)
  for _, k in ipairs(dedupe_older_keys(kind)) do
    if redis.call('HEXISTS', k, id) == 1 then return true end
  end
  return redis.call('EXISTS', base .. kind .. ':' .. id) == 1
end
-- true when the event had been seen; else marks it seen
local dedupe_expiring = {}
local function dedupe_check(kind, id)
  local p = dedupe_period()
  local cur = dedupe_key(kind, p)
  if redis.call('HSETNX', cur, id, '1') == 0 then return true end
  if dedupe_seen_before(kind, id) then
    redis.call('HDEL', cur, id)
    return true
  end
  if not dedupe_expiring[kind] then
    dedupe_expiring[kind] = true
    redis.call('EXPIREAT', cur, (p + 1) * DEDUPE_PERIOD * 86400 + C.dedupe_ttl)
  end
  return false
end
local function dedupe_seen(kind, id)
  return redis.call('HEXISTS', dedupe_key(kind, dedupe_period()), id) == 1
      or dedupe_seen_before(kind, id)
end

-- Sums increments in a table so that each distinct field costs one HINCRBY
-- however many events touched it; flush() writes them.
local function incr_add(incr, key, field, by)
  local h = incr[key]
  if not h then h = {}; incr[key] = h end
  h[field] = (h[field] or 0) + (by or 1)
end
-- cmd key v1 v2 ... in chunks: unpack() is bounded by Lua's C stack.
local function call_chunked(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end
local function incr_flush(incr)
  for key, h in pairs(incr) do
    for field, by in pairs(h) do redis.call('HINCRBY', key, field, by) end
  end
end

-- The account's metrics from window totals (SPEC §4), as numbers; nil
-- members are absent. Derived values use the published one-decimal NPS so
-- that a reader of the hashes can redo the arithmetic.
-- Health (SPEC §5): the weighted mean of the components that have data,
-- each 0..100; weights of absent components rescale away. Returns the
-- integer health (nil when no component has data), its band and the
-- components.
local H = C.health
local function health_of(T, S, acct)
  local lt = T[long_index()]
  local comps = {}
  local src = slice_nps(lt, 2) or slice_nps(lt, 1)
  if src then comps.nps = (src.nps + 100) / 2 end
  local au30 = tonumber(S.active_users_30d or '0') or 0
  local used = au30 > 0
  local seats = tonumber(acct.seats or '')
  if used and seats and seats > 0 then
    comps.adoption = math.min(100, 100 * au30 / seats)
  end
  local prev7 = tonumber(S.active_users_prev_7d or '0') or 0
  if prev7 >= 1 then
    comps.engagement = math.min(100, 100 * (tonumber(S.active_users_7d or '0') or 0) / prev7)
  end
  if used then
    comps.support = math.max(0, 100 - H.ticket_penalty * (tonumber(S.open_tickets or '0') or 0)
                                    - H.error_penalty * (tonumber(S.errors_7d or '0') or 0))
  end
  if lt[1] > 0 then
    comps.followup = math.max(0, 100 - H.overdue_penalty *
                                       (tonumber(S.overdue_followups or '0') or 0))
  end
  local sum, wsum = 0, 0
  for name, v in pairs(comps) do
    local w = H.weights[name] or 0
    sum, wsum = sum + w * v, wsum + w
  end
  if wsum == 0 then return nil, nil, comps end
  local h = math.floor(sum / wsum + 0.5)
  local band = (h >= H.green) and 'green' or ((h >= H.yellow) and 'yellow' or 'red')
  return h, band, comps
end

-- Alerts go to an outbox hash (alert_id -> message) in the same atomic
-- step as the state change that raised them; npsd publishes the outbox to
-- the alerts topic and deletes each entry once the broker acknowledged it.
-- The id counts occurrences per account and type, so a redelivered event,
-- which changes no state, cannot raise a second copy.
local function fire(acct, atype, severity, details, cause)
  local n = redis.call('HINCRBY', base .. 'alerts', atype .. ':n', 1)
  -- the occurrence number restarts after `npsctl reset`: the instant keeps
  -- ids unique across resets
  local id = atype .. ':' .. A .. ':' .. n .. ':' .. now
  local a = {}
  for k, v in pairs(acct) do a[k] = v end
  a.arr, a.seats = tonumber(acct.arr or ''), tonumber(acct.seats or '')
  local msg = cjson.encode({alert_id = id, type = atype, severity = severity,
                            account_id = A, fired_at = C.now_str,
                            details = details, account = a,
                            event_id = cause or cjson.null})
  redis.call('HSET', P .. ':outbox', id, msg)
  redis.call('LPUSH', base .. 'alert_log', msg)
  redis.call('LTRIM', base .. 'alert_log', 0, 9)
end

-- Edge-triggered account alerts: raised when a condition turns on (or the
-- band changes), never again while it holds.
local function alerts_check(acct, m, S, T, band, cause, health_only)
  local st = hgetall_map(base .. 'alerts')
  local set = {}
  local Ls = wname(L)
  local lt = T[long_index()]
  local on
  if not health_only then -- the conditions on the totals
    on = (m.role_gap_flag == 1) and '1' or '0'
    if on == '1' and st.role_gap ~= '1' then
      fire(acct, 'role_gap', 'medium', {role_gap = m['role_gap_' .. Ls],
           end_user_nps = (slice_nps(lt, 4) or {}).nps,
           decision_maker_nps = (slice_nps(lt, 6) or {}).nps, window = Ls}, cause)
    end
    set[#set + 1] = 'role_gap'; set[#set + 1] = on
    local all, pr = slice_nps(lt, 1), slice_nps(T[PREV], 1)
    local trend = m['trend_' .. Ls]
    on = (trend and trend <= H.drop_points and all and pr and all.n >= H.drop_min and
          pr.n >= H.drop_min) and '1' or '0'
    if on == '1' and st.nps_drop ~= '1' then
      fire(acct, 'nps_drop', trend <= 2 * H.drop_points and 'high' or 'medium',
           {trend = trend, nps = all.nps, nps_prev = pr.nps, responses = all.n,
            responses_prev = pr.n, window = Ls}, cause)
    end
    set[#set + 1] = 'nps_drop'; set[#set + 1] = on
  end
  if band then
    if st.health_band and st.health_band ~= band then
      fire(acct, 'health_band', band == 'red' and 'high' or
           (band == 'yellow' and 'medium' or 'low'),
           {from = st.health_band, to = band, health = m.health}, cause)
    end
    set[#set + 1] = 'health_band'; set[#set + 1] = band
  end
  local au7 = tonumber(S.active_users_7d or '0') or 0
  local prev7 = tonumber(S.active_users_prev_7d or '0') or 0
  on = (prev7 >= H.usage_min and au7 < H.usage_ratio * prev7) and '1' or '0'
  if on == '1' and st.usage_drop ~= '1' then
    fire(acct, 'usage_drop', 'medium', {active_users_7d = au7,
         active_users_prev_7d = prev7}, cause)
  end
  set[#set + 1] = 'usage_drop'; set[#set + 1] = on
  local diff = {}
  for i = 1, #set, 2 do
    if st[set[i]] ~= set[i + 1] then
      diff[#diff + 1] = set[i]; diff[#diff + 1] = set[i + 1]
    end
  end
  if #diff > 0 then redis.call('HSET', base .. 'alerts', unpack(diff)) end
end

local function metrics_of(T, acct, summary)
  local m = {}
  for wi, w in ipairs(C.windows) do
    local r = slice_nps(T[wi], 1)
    if r then m['nps_' .. wname(w)] = r.nps end
  end
  local lt = T[long_index()]
  local all = slice_nps(lt, 1)
  local Ls = wname(L)
  m['responses_' .. Ls] = all and all.n or 0
  if all then m['moe_' .. Ls] = all.moe end
  local pr = slice_nps(T[PREV], 1)
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
  local h, band, comps = health_of(T, summary, acct)
  m.health, m.health_band = h, band
  return m, comps
end

-- The survey-type comparison (summary only; the output's metrics keep the
-- specification's fields): the long window's relationship and
-- transactional slices against their medians, while the slice has
-- responses.
local function survey_benchmarks(T, m)
  local lt = T[long_index()]
  for i, st in ipairs(SURVEYS) do
    local r = slice_nps(lt, 1 + i) -- slices 2 and 3
    if r then
      local b = C.survey_benchmark[st]
      m['benchmark.' .. st] = b
      m['benchmark_delta.' .. st] = round1(r.nps - b)
    end
  end
end

-- Summary fields rewrite() owns and deletes when they have no data; the
-- usage fields (usage_summary()) and loop counters (counter()) are written
-- where they change.
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
  for _, st in ipairs(SURVEYS) do
    f[#f + 1] = 'benchmark.' .. st
    f[#f + 1] = 'benchmark_delta.' .. st
  end
  f[#f + 1] = 'health'
  f[#f + 1] = 'health_band'
  for _, c in ipairs({'nps', 'adoption', 'engagement', 'support', 'followup'}) do
    f[#f + 1] = 'health.' .. c
  end
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

-- The roll schedule: the first day after today on which a response of
-- day `day` changes one of the account's periods (it enters when dated in
-- the future, leaves a window, moves into or out of the previous period).
local function roll_candidate(day, best)
  local function cand(d)
    if d > today and (best == nil or d < best) then best = d end
  end
  if day >= oldest then
    cand(day)
    for _, w in ipairs(C.windows) do cand(day + w) end
    cand(day + 2 * L)
  end
  return best
end

local function roll_from_buckets(flat, best)
  for i = 1, #flat, 2 do
    local f = flat[i]
    best = roll_candidate(
      tonumber(string.sub(f, 1, string.find(f, ':', 1, true) - 1)), best)
  end
  return best
end

-- Schedules the account in <prefix>:roll a minute past midnight UTC of the
-- day its windows next change, or removes it when nothing will change.
local function roll_schedule(best)
  if best then
    redis.call('ZADD', P .. ':roll', best * 86400000 + 60000, A)
  else
    redis.call('ZREM', P .. ':roll', A)
  end
end

-- The nps:events notice of a summary change (SPEC §7).
local function announce(npsL, health, band)
  local ev = {account_id = A, updated_at = C.now_str}
  ev['nps_' .. wname(L)] = npsL
  ev.health = health
  ev.health_band = band
  redis.call('PUBLISH', P .. ':events', cjson.encode(ev))
end

local HEALTH_FIELDS = {'health', 'health_band', 'health.nps', 'health.adoption',
                       'health.engagement', 'health.support', 'health.followup'}

-- Rewrites the account's derived keys from its period totals and announces
-- the change on pub/sub. windows: nil when the totals did not change (the
-- window hashes are current), 'full' after a recomputation, or the window
-- totals before this call's counting (write_window() rewrites what
-- changed). health_only: the totals and the account context did not
-- change, only health inputs (usage, loop counters) did: the window
-- metrics, their rank and their alert conditions stand.
local function rewrite(acct, meta, T, cause, windows, health_only)
  if meta.vcfg ~= vcfg() then -- other settings: everything is rewritten
    health_only = false
    meta.vcfg = vcfg()
    redis.call('HSET', base .. 'meta', 'vcfg', meta.vcfg)
  end
  if windows then
    write_windows(base, T, windows ~= 'full' and windows or nil)
  end
  local skey = base .. 'summary'
  local summary = hgetall_map(skey)
  local m, comps, fields
  if health_only then
    m, fields = {}, HEALTH_FIELDS
    m.health, m.health_band, comps = health_of(T, summary, acct)
  else
    m, comps = metrics_of(T, acct, summary)
    survey_benchmarks(T, m)
    fields = owned_fields()
  end
  for c, v in pairs(comps) do m['health.' .. c] = round1(v) end
  -- only what differs is written: a field costs about 1 us in HSET
  local set, del = {}, {}
  for _, f in ipairs(fields) do
    if m[f] ~= nil then
      local v = num_str(m[f])
      if summary[f] ~= v then
        set[#set + 1] = f
        set[#set + 1] = v
      end
    elseif summary[f] then
      del[#del + 1] = f
    end
  end
  if meta.last_response_at and (summary.last_response_at ~= meta.last_response_at or
                                summary.last_score ~= meta.last_score) then
    set[#set + 1] = 'last_response_at'
    set[#set + 1] = meta.last_response_at
    set[#set + 1] = 'last_score'
    set[#set + 1] = meta.last_score
  end
  set[#set + 1] = 'updated_at'
  set[#set + 1] = C.now_str
  if #del > 0 then redis.call('HDEL', skey, unpack(del)) end
  redis.call('HSET', skey, unpack(set))

  local npsL
  if health_only then
    npsL = tonumber(summary['nps_' .. wname(L)] or '')
  else
    npsL = m['nps_' .. wname(L)]
    if npsL ~= nil then
      redis.call('ZADD', P .. ':rank:nps_' .. wname(L), npsL, A)
    else
      redis.call('ZREM', P .. ':rank:nps_' .. wname(L), A)
    end
  end
  if m.health then
    redis.call('ZADD', P .. ':rank:health', m.health, A)
  else
    redis.call('ZREM', P .. ':rank:health', A)
  end
  alerts_check(acct, m, summary, T, m.health_band, cause, health_only)
  announce(npsL, m.health, m.health_band)
end

-- Recomputes a cohort's window hashes, or a category's theme rankings;
-- both are derived views, so doing it twice is harmless (several instances
-- may).
local function refresh_view(name)
  if string.sub(name, 1, 7) == 'themes:' then
    local cat = string.sub(name, 8)
    local tk = P .. ':themes:' .. cat
    local flat = redis.call('HGETALL', tk .. ':d')
    local counts, stale = {}, {}
    for wi = 1, W do counts[wi] = {} end
    for i = 1, #flat, 2 do
      local f = flat[i]
      local sep = string.find(f, ':', 1, true)
      local day, th = tonumber(string.sub(f, 1, sep - 1)), string.sub(f, sep + 1)
      if day < oldest then stale[#stale + 1] = f end
      for _, pi in ipairs(periods_of(day)) do
        if pi <= W then
          counts[pi][th] = (counts[pi][th] or 0) + tonumber(flat[i + 1])
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
  -- one value only: totals_load() also returns the bucket reply
  write_windows(ck .. ':', (totals_load(ck .. ':d', ck .. ':t', true)))
end

-- Counts a cohort's new contributions (incr: bucket field "<day>:<slot>" ->
-- count, already in its day buckets) into its totals cache and window
-- hashes. Summing a large cohort's buckets (up to 2 x long window days x 21
-- fields, thousands for "all") happens only when the cache is stale (a new
-- day).
local function count_cohort(name, incr)
  local ck = P .. ':cohort:' .. name
  local T, flat = totals_load(ck .. ':d', ck .. ':t', false)
  if flat then -- recomputed from the buckets, which hold the deltas
    write_windows(ck .. ':', T)
    return
  end
  local T0 = totals_copy(T, W)
  for f, by in pairs(incr) do
    local sep = string.find(f, ':', 1, true)
    local sl = tonumber(string.sub(f, sep + 1)) + 1
    for _, pi in ipairs(periods_of(tonumber(string.sub(f, 1, sep - 1)))) do
      T[pi][sl] = T[pi][sl] + by
    end
  end
  totals_store(ck .. ':t', T)
  write_windows(ck .. ':', T, T0)
end

-- Usage summary (SPEC §5 inputs) from the per-day HyperLogLogs of active
-- users and features, the per-day error counts and the ticket counters.
local function days_keys(prefix, from, to)
  local ks = {}
  for d = from, to do ks[#ks + 1] = prefix .. d end
  return ks
end

-- The four PFCOUNTs merge up to 30 HyperLogLogs each (the dearest part of
-- a usage call). A count depends only on the registers of its days' HLLs
-- and on the day: it is recounted when the day changed since the last count
-- ("counted_day") or when a PFADD changed a register on one of its days.
-- hll: true (recount all), or {au = {[day] = true}, ft = {...}}, the days
-- whose HLLs changed.
-- Returns true when a health input (the usage summary fields) changed.
local USAGE_FIELDS = {'active_users_7d', 'active_users_30d',
                      'active_users_prev_7d', 'features_30d', 'errors_7d',
                      'open_tickets'}
local function usage_summary(hll)
  local ukey = base .. 'usage'
  local u = hgetall_map(ukey)
  if not u.last_activity_ms then return false end
  local set = {}
  local all = hll == true or u.counted_day ~= tostring(today)
  local function count(field, kind, from, to)
    local hit = all
    if not hit then
      for d in pairs(hll[kind]) do
        local n = tonumber(d)
        if n >= from and n <= to then hit = true; break end
      end
    end
    if hit then
      set[#set + 1] = field
      set[#set + 1] = redis.call('PFCOUNT', unpack(days_keys(base .. kind .. ':', from, to)))
    end
  end
  count('active_users_7d', 'au', today - 6, today)
  count('active_users_30d', 'au', today - 29, today)
  count('active_users_prev_7d', 'au', today - 13, today - 7)
  count('features_30d', 'ft', today - 29, today)
  if all then redis.call('HSET', ukey, 'counted_day', today) end
  local err7, stale = 0, {}
  for f, v in pairs(u) do
    if string.sub(f, 1, 4) == 'err:' then
      local d = tonumber(string.sub(f, 5))
      if d > today - 7 and d <= today then err7 = err7 + tonumber(v) end
      if d <= today - 31 then stale[#stale + 1] = f end
    end
  end
  if #stale > 0 then redis.call('HDEL', ukey, unpack(stale)) end
  local open = (tonumber(u.tickets_opened or '0') or 0) - (tonumber(u.tickets_closed or '0') or 0)
  if open < 0 then open = 0 end
  set[#set + 1] = 'errors_7d'; set[#set + 1] = err7
  set[#set + 1] = 'open_tickets'; set[#set + 1] = open
  local old = redis.call('HMGET', base .. 'summary', unpack(USAGE_FIELDS))
  local was, changed = {}, false
  for i, f in ipairs(USAGE_FIELDS) do was[f] = old[i] end
  for i = 1, #set, 2 do
    if was[set[i]] ~= tostring(set[i + 1]) then changed = true end
  end
  set[#set + 1] = 'last_activity_at'; set[#set + 1] = u.last_activity_at
  redis.call('HSET', base .. 'summary', unpack(set))
  return changed
end

-- Usage keeps the windows of active users moving daily while it lasts.
local function usage_roll(roll)
  local last = tonumber(redis.call('HGET', base .. 'usage', 'last_activity_ms') or '')
  if last and math.floor(last / 86400000) > today - 31 then
    if roll == nil or roll > today + 1 then roll = today + 1 end
  end
  return roll
end

-- Closed loop (SPEC §5). A detractor opens a loop with three deadlines;
-- each stage is met by the first follow-up of that stage or a later one.
-- A deadline passing unmet (timer) or met late (follow-up) raises one
-- followup_overdue alert. Counters live in the account summary and the
-- owner's nps:csm:<owner> hash, using the owner recorded at the loop's start.
local STAGES = {'acknowledge', 'route', 'close'}
local ACTIONS = {acknowledged = 1, routed = 2, closed = 3}

local function csm_incr(owner, field, by)
  if owner and owner ~= '' then
    redis.call('HINCRBY', P .. ':csm:' .. owner, field, by)
  end
end

-- While a responses call runs, counter changes are summed in its increment
-- table (flushed once at its end) instead of one HINCRBY pair per detractor.
local counter_sink = nil
local function counter(field, by, owner)
  if counter_sink then
    incr_add(counter_sink, base .. 'summary', field, by)
    if owner and owner ~= '' then
      incr_add(counter_sink, P .. ':csm:' .. owner, field, by)
    end
    return
  end
  redis.call('HINCRBY', base .. 'summary', field, by)
  csm_incr(owner, field, by)
end

local function loop_overdue(lk, lp, acct, stage, cause, late_at)
  if lp[stage .. '_missed'] == '1' then return end
  lp[stage .. '_missed'] = '1'
  redis.call('HSET', lk, stage .. '_missed', '1')
  local due = tonumber(lp[stage .. '_due'])
  local d = {response_event_id = lp.rid, stage = stage,
             due_at = iso(due), submitted_at = lp.submitted_at}
  if late_at then d.met_at = late_at end
  fire(acct, 'followup_overdue', stage == 'close' and 'high' or 'medium', d, cause)
  if lp.overdue ~= '1' and lp.closed ~= '1' then
    lp.overdue = '1'
    redis.call('HSET', lk, 'overdue', '1')
    counter('overdue_followups', 1, lp.owner)
  end
  return due
end

local function loop_key(rid) return base .. 'loop:' .. rid end
local function loop_member(rid, stage) return A .. '\t' .. rid .. '\t' .. stage end

-- A loop has one member in the timer set <prefix>:loops, for its next
-- deadline: the earliest of 'end' (midnight UTC when the detractor's day
-- leaves the long window) and the stages neither met nor already acted on
-- by the timer (on a tie a stage before 'end', the earlier stage first).
-- Four members per loop, one per deadline, cost about 2.7 KiB of Redis per
-- account; earlier versions' per-stage members still fire and are handled
-- the same way.
local function loop_end_ms(lp)
  return (math.floor(tonumber(lp.submitted_ms) / 86400000) + L) * 86400000
end
local function loop_next_timer(lp)
  local best, which = loop_end_ms(lp), 'end'
  for i = #STAGES, 1, -1 do
    local stage = STAGES[i]
    if not lp[stage .. '_at'] and lp[stage .. '_missed'] ~= '1' then
      local due = tonumber(lp[stage .. '_due'])
      if due <= best then best, which = due, stage end
    end
  end
  return best, which
end

-- Applies one follow-up to an open loop; returns true when it changed it.
local function loop_apply(lk, lp, acct, level, at_ms, at_str, cause)
  local changed = false
  for si = 1, level do
    local stage = STAGES[si]
    if not lp[stage .. '_at'] then
      lp[stage .. '_at'] = at_str
      redis.call('HSET', lk, stage .. '_at', at_str)
      if at_ms > tonumber(lp[stage .. '_due']) then
        loop_overdue(lk, lp, acct, stage, cause, at_str)
      elseif lp[stage .. '_missed'] == '1' then
        -- met on time, but the timer saw it missing first (the follow-up
        -- arrived late): its alert stands, the overdue state does not
        lp[stage .. '_missed'] = '0'
        redis.call('HSET', lk, stage .. '_missed', '0')
        local still = false
        for _, st2 in ipairs(STAGES) do
          if lp[st2 .. '_missed'] == '1' then still = true end
        end
        if not still and lp.overdue == '1' and lp.closed ~= '1' then
          lp.overdue = '0'
          redis.call('HSET', lk, 'overdue', '0')
          counter('overdue_followups', -1, lp.owner)
        end
      end
      changed = true
    end
  end
  if level == 3 and lp.closed ~= '1' then
    lp.closed = '1'
    redis.call('HSET', lk, 'closed', '1')
    counter('open_detractors', -1, lp.owner)
    if lp.overdue == '1' then counter('overdue_followups', -1, lp.owner) end
    counter('loops_closed', 1, lp.owner)
    if at_ms <= tonumber(lp.close_due) then counter('loops_closed_on_time', 1, lp.owner) end
    redis.call('SREM', base .. 'loops', lp.rid)
    changed = true
  end
  if changed then
    -- every member name the loop may have: the one scheduled may differ
    -- from loop_next_timer()'s answer before this change when the long
    -- window was shortened since, and earlier versions kept one per stage
    local due1, timer1 = loop_next_timer(lp)
    redis.call('ZREM', P .. ':loops', loop_member(lp.rid, 'acknowledge'),
               loop_member(lp.rid, 'route'), loop_member(lp.rid, 'close'),
               loop_member(lp.rid, 'end'))
    redis.call('ZADD', P .. ':loops', due1, loop_member(lp.rid, timer1))
  end
  return changed
end

local pending_set = nil
local function loop_open(acct, rid, ts_ms, ts_str, day)
  -- detractors submitted in the long window's days have a loop
  if day <= today - L then return end
  local lk = loop_key(rid)
  local owner = acct.csm_owner or ''
  local due = {ts_ms + C.loop.ack_ms, ts_ms + C.loop.route_ms, ts_ms + C.loop.close_ms}
  local lp = {rid = rid, owner = owner, submitted_at = ts_str, submitted_ms = tostring(ts_ms)}
  local args = {'rid', rid, 'owner', owner, 'submitted_ms', ts_ms, 'submitted_at', ts_str}
  for si, stage in ipairs(STAGES) do
    lp[stage .. '_due'] = tostring(due[si])
    args[#args + 1] = stage .. '_due'; args[#args + 1] = due[si]
  end
  -- no TTL: the 'end' timer deletes the loop when its day leaves the window
  redis.call('HSET', lk, unpack(args))
  local first, stage1 = loop_next_timer(lp)
  redis.call('ZADD', P .. ':loops', first, loop_member(rid, stage1))
  redis.call('SADD', base .. 'loops', rid)
  counter('open_detractors', 1, owner)
  -- follow-ups that arrived before their response (indexed in the
  -- account's fpending set, read once per call)
  if pending_set == nil then
    pending_set = {}
    for _, r in ipairs(redis.call('SMEMBERS', base .. 'fpending')) do
      pending_set[r] = true
    end
  end
  if pending_set[rid] then
    local pk = base .. 'fpend:' .. rid
    local pend = redis.call('LRANGE', pk, 0, -1)
    for i = #pend, 1, -1 do
      local f = cjson.decode(pend[i])
      loop_apply(lk, lp, acct, f.level, f.at_ms, f.at, f.event_id)
    end
    redis.call('DEL', pk)
    redis.call('SREM', base .. 'fpending', rid)
  end
end

if mode == 'cohorts' then
  -- Cohort and theme contributions that responses queued per account
  -- (<prefix>:{A}:cq, accounts listed in <prefix>:cq) are summed across
  -- accounts here, so that a response costs one queued record rather than
  -- some thirty bucket writes. Draining and counting are one atomic step.
  local max = tonumber(ARGV[7])
  local incr, fresh, zincr, redo = {}, {}, {}, {}
  -- queues are small (a few records per account): drain more of them per
  -- call than views are refreshed
  for _, a in ipairs(redis.call('SPOP', P .. ':cq', 8 * max)) do
    local qk = P .. ':{' .. a .. '}:cq'
    for _, r in ipairs(redis.call('LRANGE', qk, 0, -1)) do
      local x = cjson.decode(r)
      local day, slots, names, ths, cat = x[1], x[2], x[3], x[4], x[5]
      if day >= oldest then
        local fs = {}
        for k, sl in ipairs(slots) do fs[k] = day .. ':' .. sl end
        for _, name in ipairs(names) do
          local h = fresh[name]
          if not h then
            h = {}; fresh[name] = h
            incr[P .. ':cohort:' .. name .. ':d'] = h
          end
          for _, f in ipairs(fs) do h[f] = (h[f] or 0) + 1 end
        end
        -- theme rankings: the windows this day is in count it now; a new
        -- day rebuilds them from the buckets. A day after today (a clock
        -- behind another instance's, or a response from the allowed near
        -- future) is in no window yet: its rankings are rebuilt instead.
        local tk = P .. ':themes:' .. CATS[cat + 1]
        local pis = periods_of(day)
        if day > today and #ths > 0 then redo['themes:' .. CATS[cat + 1]] = true end
        for _, th in ipairs(ths) do
          incr_add(incr, tk .. ':d', day .. ':' .. th)
          for _, pi in ipairs(pis) do
            if pi <= W then incr_add(zincr, tk .. ':w:' .. wname(C.windows[pi]), th) end
          end
        end
      end
    end
    redis.call('DEL', qk)
  end
  incr_flush(incr)
  for key, h in pairs(zincr) do
    for th, by in pairs(h) do redis.call('ZINCRBY', key, by, th) end
  end
  for name, h in pairs(fresh) do count_cohort(name, h) end
  local fn = {}
  for name in pairs(fresh) do fn[#fn + 1] = name end
  if #fn > 0 then call_chunked('SADD', P .. ':cohorts', fn) end
  local rn = {}
  for name in pairs(redo) do rn[#rn + 1] = name end
  if #rn > 0 then redis.call('SADD', P .. ':dirty', unpack(rn)) end
  -- a new day, or other windows: every cohort and theme view rolls. The
  -- theme rankings have no totals cache whose signature would tell, so
  -- the windows are recorded next to the day ("<day>/<windows>").
  local wins = table.concat(C.windows, ',')
  local rolled = redis.call('GET', P .. ':rolled_day') or ''
  local sep = string.find(rolled, '/', 1, true)
  local rday = tonumber(sep and string.sub(rolled, 1, sep - 1) or rolled) or -1
  local rwins = sep and string.sub(rolled, sep + 1) or ''
  if rday < today or rwins ~= wins then
    redis.call('SUNIONSTORE', P .. ':dirty', P .. ':dirty', P .. ':cohorts')
    redis.call('SADD', P .. ':dirty', 'themes:detractor', 'themes:passive',
               'themes:promoter')
    redis.call('SET', P .. ':rolled_day',
               math.max(today, rday) .. '/' .. wins)
  end
  local names = redis.call('SPOP', P .. ':dirty', max)
  for _, name in ipairs(names) do refresh_view(name) end
  return redis.call('SCARD', P .. ':dirty') + redis.call('SCARD', P .. ':cq')
end

if mode == 'due' then
  return redis.call('ZRANGEBYSCORE', P .. ':roll', '-inf', now, 'LIMIT', 0,
                    tonumber(ARGV[7]))
end

if mode == 'loops_due' then
  -- strictly past: a follow-up exactly at its deadline is on time
  return redis.call('ZRANGEBYSCORE', P .. ':loops', '-inf', '(' .. now,
                    'LIMIT', 0, tonumber(ARGV[7]))
end

local acct = hgetall_map(base .. 'account')
local meta = hgetall_map(base .. 'meta')
local dkey, tkey = base .. 'd', base .. 't'

if mode == 'refresh' then
  local T, flat = totals_load(dkey, tkey, true)
  usage_summary(true)
  rewrite(acct, meta, T, nil, 'full')
  roll_schedule(usage_roll(roll_from_buckets(flat, nil)))
  return 1
end

if mode == 'usage' then
  -- per event: event_id user_id day type feature ts_ms ts_str
  local n = tonumber(ARGV[7])
  local byday = {}
  for i = 0, n - 1 do
    local o = 8 + i * 7
    local day = ARGV[o + 2]
    local g = byday[day]
    if not g then g = {}; byday[day] = g end
    g[#g + 1] = o
  end
  local users, feats, errs = {}, {}, {}
  local opened, closed, counted = 0, 0, 0
  local ukey = base .. 'usage'
  local last = tonumber(redis.call('HGET', ukey, 'last_activity_ms') or '-1')
  local last_str, cause
  -- dedupe: one set of event ids per occurrence day, kept 4 days
  for day, g in pairs(byday) do
    local ids = {}
    for _, o in ipairs(g) do ids[#ids + 1] = ARGV[o] end
    local sk = base .. 'useen:' .. day
    local seen = {}
    for i = 1, #ids, 1000 do
      local part = redis.call('SMISMEMBER', sk, unpack(ids, i, math.min(i + 999, #ids)))
      for _, v in ipairs(part) do seen[#seen + 1] = v end
    end
    local fresh, dupe = {}, {}
    for k, o in ipairs(g) do
      if seen[k] == 0 and not dupe[ARGV[o]] then
        dupe[ARGV[o]] = true
        fresh[#fresh + 1] = ARGV[o]
        counted = counted + 1
        local d, t = tonumber(day), tonumber(ARGV[o + 3])
        if d > today - 31 and d <= today + 1 then
          users[day] = users[day] or {}
          table.insert(users[day], ARGV[o + 1])
          if t == 1 and ARGV[o + 4] ~= '' then
            feats[day] = feats[day] or {}
            table.insert(feats[day], ARGV[o + 4])
          end
          if t == 2 then errs[day] = (errs[day] or 0) + 1 end
        end
        if t == 3 then opened = opened + 1 end
        if t == 4 then closed = closed + 1 end
        local ts = tonumber(ARGV[o + 5])
        if ts > last then last, last_str = ts, ARGV[o + 6] end
        cause = ARGV[o]
      end
    end
    if #fresh > 0 then
      call_chunked('SADD', sk, fresh)
      redis.call('EXPIRE', sk, C.usage_dedupe_ttl)
    end
  end
  if counted == 0 then return 0 end
  local hll = {au = {}, ft = {}}
  local function pfadd(kind, day, list)
    local key = base .. kind .. ':' .. day
    for i = 1, #list, 1000 do
      if redis.call('PFADD', key, unpack(list, i, math.min(i + 999, #list))) == 1 then
        hll[kind][day] = true
      end
    end
    redis.call('EXPIRE', key, 32 * 86400)
  end
  for day, us in pairs(users) do pfadd('au', day, us) end
  for day, fs in pairs(feats) do pfadd('ft', day, fs) end
  for day, c in pairs(errs) do redis.call('HINCRBY', ukey, 'err:' .. day, c) end
  if opened > 0 then redis.call('HINCRBY', ukey, 'tickets_opened', opened) end
  if closed > 0 then redis.call('HINCRBY', ukey, 'tickets_closed', closed) end
  if last_str then
    redis.call('HSET', ukey, 'last_activity_ms', last, 'last_activity_at', last_str)
  end
  local inputs_changed = usage_summary(hll)
  local T, flat = totals_load(dkey, tkey, false)
  if flat then
    rewrite(acct, meta, T, cause, 'full')
  elseif inputs_changed or meta.vcfg ~= vcfg() then
    rewrite(acct, meta, T, cause, nil, true)
  else
    -- no health input moved: health, ranks and alert state stand; only
    -- last_activity_at changed
    local skey = base .. 'summary'
    redis.call('HSET', skey, 'updated_at', C.now_str)
    local cur = redis.call('HMGET', skey, 'nps_' .. wname(L), 'health', 'health_band')
    announce(tonumber(cur[1] or ''), tonumber(cur[2] or ''), cur[3] or nil)
  end
  local cur = redis.call('ZSCORE', P .. ':roll', A)
  local roll = cur and math.floor(tonumber(cur) / 86400000) or nil
  if roll and roll <= today then roll = nil end
  roll_schedule(usage_roll(roll))
  return counted
end

if mode == 'followups' then
  -- per follow-up: event_id response_event_id action at_ms at_str
  local n = tonumber(ARGV[7])
  local out, changed, cause = {}, false, nil
  for i = 0, n - 1 do
    local o = 8 + i * 5
    local fid, rid, action = ARGV[o], ARGV[o + 1], ARGV[o + 2]
    local at_ms, at_str = tonumber(ARGV[o + 3]), ARGV[o + 4]
    local status = 'applied'
    if dedupe_check('fev', fid) then
      status = 'duplicate'
    else
      local lk = loop_key(rid)
      local lp = hgetall_map(lk)
      if next(lp) then
        if loop_apply(lk, lp, acct, ACTIONS[action], at_ms, at_str, fid) then
          changed, cause = true, fid
        end
      elseif dedupe_seen('ev', rid) then
        status = 'no_open_loop' -- not a detractor, or its loop ended
      else
        -- the response has not arrived (yet): kept and matched on arrival
        local pk = base .. 'fpend:' .. rid
        redis.call('LPUSH', pk, cjson.encode({event_id = fid, level = ACTIONS[action],
                                              at_ms = at_ms, at = at_str}))
        redis.call('EXPIRE', pk, C.dedupe_ttl)
        redis.call('SADD', base .. 'fpending', rid)
        redis.call('EXPIRE', base .. 'fpending', C.dedupe_ttl)
        status = 'pending'
      end
    end
    out[#out + 1] = status
  end
  if changed then
    local T, flat = totals_load(dkey, tkey, false)
    rewrite(acct, meta, T, cause, flat and 'full' or nil, not flat)
  end
  return out
end

if mode == 'tick' then
  -- due loop stages of this account: rid stage pairs
  local changed = false
  for i = 7, #ARGV, 2 do
    local rid, stage = ARGV[i], ARGV[i + 1]
    if redis.call('ZREM', P .. ':loops', loop_member(rid, stage)) == 1 then
      local lk = loop_key(rid)
      local lp = hgetall_map(lk)
      if next(lp) then
        -- act on this deadline and on every later one already past (strictly,
        -- as loops_due lists them), then schedule the loop's next one
        while true do
          if stage == 'end' and loop_end_ms(lp) < now then
            if lp.closed ~= '1' then
              counter('open_detractors', -1, lp.owner)
              if lp.overdue == '1' then counter('overdue_followups', -1, lp.owner) end
            end
            redis.call('DEL', lk)
            redis.call('SREM', base .. 'loops', rid)
            break
          elseif stage ~= 'end' and not lp[stage .. '_at'] then
            loop_overdue(lk, lp, acct, stage, nil, nil)
          end
          local due, nxt = loop_next_timer(lp)
          if due >= now then
            redis.call('ZADD', P .. ':loops', due, loop_member(rid, nxt))
            break
          end
          stage = nxt
        end
        changed = true
      end
    end
  end
  if changed then
    local T, flat = totals_load(dkey, tkey, false)
    rewrite(acct, meta, T, nil, flat and 'full' or nil, not flat)
  end
  return changed and 1 or 0
end

if mode == 'context' then
  local upd = tonumber(ARGV[7])
  local stored = tonumber(meta.context_updated_ms or '-1')
  if upd >= 0 and stored >= 0 and upd < stored then return 0 end
  -- the owner's account count (nps:csm:<owner> accounts)
  local old_owner, new_owner = acct.csm_owner or '', ''
  for i = 8, #ARGV - 1, 2 do
    if ARGV[i] == 'csm_owner' then new_owner = ARGV[i + 1] end
  end
  if old_owner ~= new_owner then
    if old_owner ~= '' then
      local ok = P .. ':csm:' .. old_owner
      redis.call('SREM', ok .. ':accounts', A)
      redis.call('HSET', ok, 'accounts', redis.call('SCARD', ok .. ':accounts'))
    end
    if new_owner ~= '' then
      local nk = P .. ':csm:' .. new_owner
      redis.call('SADD', nk .. ':accounts', A)
      redis.call('HSET', nk, 'accounts', redis.call('SCARD', nk .. ':accounts'))
    end
  end
  redis.call('DEL', base .. 'account')
  local kv = {}
  for i = 8, #ARGV do kv[#kv + 1] = ARGV[i] end
  if #kv > 0 then redis.call('HSET', base .. 'account', unpack(kv)) end
  if upd >= 0 then
    redis.call('HSET', base .. 'meta', 'context_updated_ms', upd)
  end
  acct = hgetall_map(base .. 'account')
  local T, flat = totals_load(dkey, tkey, false)
  if flat then roll_schedule(roll_from_buckets(flat, nil)) end
  rewrite(acct, meta, T, nil, flat and 'full' or nil)
  return 1
end

-- mode == 'responses'
local n = tonumber(ARGV[7])
local out = {}
local T, flat = totals_load(dkey, tkey, false)
-- the totals before counting: the window hashes are written where they
-- differ
local T0 = totals_copy(T, W)
local roll = flat and roll_from_buckets(flat, nil) or nil
if not flat then
  local cur = redis.call('ZSCORE', P .. ':roll', A)
  if cur then roll = math.floor(tonumber(cur) / 86400000) end
  if roll and roll <= today then roll = nil end
end
local recent_key = base .. 'recent'
-- earlier responses, newest first, kept as the JSON they are stored as
local recent = redis.call('LRANGE', recent_key, 0, C.previous - 1)
local pushed_json = {}
-- the snapshot's parts shared by every response of this call
local snap_head = '{"processed_at":' .. string.format('%d', now) ..
                  ',"account":' .. cjson.encode(acct) .. ',"digest":"'
local cause
local counted = 0
local summary = hgetall_map(base .. 'summary')

local incr, queue = {}, {}
counter_sink = incr

for i = 0, n - 1 do
  local o = 8 + i * FIELDS_PER_RESPONSE
  local eid, uid = ARGV[o], ARGV[o + 1]
  local score, day = tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  local ts_ms, ts_str = tonumber(ARGV[o + 4]), ARGV[o + 5]
  local role, survey = tonumber(ARGV[o + 6]), tonumber(ARGV[o + 7])
  local lang, chan, themes = ARGV[o + 8], ARGV[o + 9], ARGV[o + 10]
  local attrs, comment, digest = ARGV[o + 11], ARGV[o + 12], ARGV[o + 13]
  local outkey = base .. 'out:' .. eid
  if dedupe_check('ev', eid) then
    out[#out + 1] = 0
    out[#out + 1] = redis.call('GET', outkey)
  else
    counted = counted + 1
    local cat = (score >= 9) and 2 or ((score >= 7) and 1 or 0)
    local slots = {cat, (1 + survey) * 3 + cat, (3 + role) * 3 + cat}
    if day >= oldest then
      local periods = periods_of(day)
      for _, sl in ipairs(slots) do
        incr_add(incr, dkey, day .. ':' .. sl)
        for _, pi in ipairs(periods) do T[pi][sl + 1] = T[pi][sl + 1] + 1 end
      end
      roll = roll_candidate(day, roll)
      -- the cohorts this response counts in, as of now (responses already
      -- counted keep theirs when the account's context changes later)
      local names = {'all:all'}
      local function cohort(dim, val)
        if val and val ~= '' then names[#names + 1] = dim .. ':' .. val end
      end
      cohort('segment', acct.segment)
      cohort('plan', acct.plan)
      cohort('lifecycle_stage', acct.lifecycle_stage)
      cohort('language', lang)
      cohort('channel', chan)
      cohort('survey_type', SURVEYS[survey + 1])
      cohort('role', ROLES[role + 1])
      for k, v in string.gmatch(attrs, '([^\t\n]+)\t([^\n]*)\n') do
        cohort(k, v)
      end
      local ths = {}
      for th in string.gmatch(themes, '[^,]+') do ths[#ths + 1] = th end
      queue[#queue + 1] = cjson.encode({day, slots, names, ths, cat})
    end
    -- survey senders skip users surveyed within the suppression period
    local ttl = math.floor((ts_ms + C.suppress_ms - now) / 1000)
    if ttl > 0 then
      local skey = P .. ':suppress:' .. uid
      if redis.call('TTL', skey) < ttl then
        redis.call('SET', skey, ts_str, 'EX', ttl)
      end
    end
    local last = tonumber(meta.last_response_ms or '-1')
    if ts_ms >= last then
      meta.last_response_ms = tostring(ts_ms)
      meta.last_response_at = ts_str
      meta.last_score = tostring(score)
    end
    -- the snapshot: this response's account view as of its counting
    local m = metrics_of(T, acct, summary)
    local previous = {}
    for j = #pushed_json, 1, -1 do
      if #previous < C.previous then previous[#previous + 1] = pushed_json[j] end
    end
    for _, r in ipairs(recent) do
      if #previous < C.previous then previous[#previous + 1] = r end
    end
    -- built from pre-encoded parts: the account and the earlier responses
    -- are encoded once per call, not once per response
    local snap = snap_head .. digest .. '","metrics":' .. cjson.encode(m) ..
                 ',"previous":[' .. table.concat(previous, ',') .. ']}'
    redis.call('SET', outkey, snap, 'EX', C.replay_ttl)
    local me = {score = score, role = ROLES[role + 1], submitted_at = ts_str}
    if comment ~= '' then me.comment = comment end
    pushed_json[#pushed_json + 1] = cjson.encode(me)
    if cat == 0 then loop_open(acct, eid, ts_ms, ts_str, day) end
    cause = eid
    out[#out + 1] = 1
    out[#out + 1] = snap
  end
end

if counted > 0 then
  incr_flush(incr)
  totals_store(tkey, T)
  roll_schedule(usage_roll(roll))
  if #queue > 0 then
    call_chunked('LPUSH', base .. 'cq', queue)
    redis.call('SADD', P .. ':cq', A)
  end
  if C.previous > 0 then
    local keep = {}
    for i = math.max(1, #pushed_json - C.previous + 1), #pushed_json do
      keep[#keep + 1] = pushed_json[i]
    end
    redis.call('LPUSH', recent_key, unpack(keep))
    redis.call('LTRIM', recent_key, 0, C.previous - 1)
  end
  if meta.last_response_ms then
    redis.call('HSET', base .. 'meta', 'last_response_ms',
               meta.last_response_ms, 'last_response_at',
               meta.last_response_at, 'last_score', meta.last_score)
  end
  rewrite(acct, meta, T, cause, flat and 'full' or T0)
elseif flat then
  -- only duplicates, but the totals were recomputed (a day rolled): the
  -- window hashes follow the cache
  rewrite(acct, meta, T, nil, 'full')
end
return out
