-- wrk-completions.lua - wrk script: POST a non-streaming /v1/completions body.
--
-- usage: wrk -t1 -c4 -d10s -s scripts/wrk-completions.lua http://127.0.0.1:8080 [-- MAX_TOKENS [PROMPT]]
--   MAX_TOKENS  max_tokens per request (default 8)
--   PROMPT      prompt text (default "Once upon a time, there was a little")
-- Counts non-200 responses and responses without a "choices" field, and prints
-- them (with the status codes seen) in the summary. Used by scripts/load-wrk.sh.

local max_tokens = 8
local prompt = "Once upon a time, there was a little"
local threads = {}

local function json_str(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  if args[1] then max_tokens = tonumber(args[1]) or max_tokens end
  if args[2] then prompt = args[2] end
  wrk.method = "POST"
  wrk.path = "/v1/completions"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = string.format('{"prompt":%s,"max_tokens":%d,"temperature":0,"stream":false}',
                           json_str(prompt), max_tokens)
  bad_status, no_choices, ok = 0, 0, 0
  codes = {}
end

function response(status, headers, body)
  if status ~= 200 then
    bad_status = bad_status + 1
    codes[status] = (codes[status] or 0) + 1
  elseif not body:find('"choices"', 1, true) then
    no_choices = no_choices + 1
  else
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local t_ok, t_bad, t_nochoice, all_codes = 0, 0, 0, {}
  for _, th in ipairs(threads) do
    t_ok = t_ok + (th:get("ok") or 0)
    t_bad = t_bad + (th:get("bad_status") or 0)
    t_nochoice = t_nochoice + (th:get("no_choices") or 0)
    for k, v in pairs(th:get("codes") or {}) do all_codes[k] = (all_codes[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(all_codes) do table.insert(parts, k .. "x" .. v) end
  io.write(string.format("completions ok: %d, non-200: %d %s, 200 without choices: %d\n",
                         t_ok, t_bad, table.concat(parts, " "), t_nochoice))
  io.write(string.format("latency p50/p90/p99 ms: %.1f / %.1f / %.1f\n",
                         latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
                         latency:percentile(99) / 1e3))
end
