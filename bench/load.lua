-- wrk script for bench/load.py (run by it; see there). Configured through the environment:
--   BENCH_METHOD  GET or POST              BENCH_PATH    the path to request
--   BENCH_EXPECT  the status every answer must have (anything else counts as an error)
--   BENCH_DATA    optional file, one client per line: cookie TAB csrf_token TAB form fields,
--                 optionally TAB a path of its own (the peer's pages name the account in it);
--                 requests go round the clients, so many customers are served at once
--   BENCH_RUN     a label unique to this wrk run: POSTs carry a fresh one-time form id,
--                 "bench-<run>-t<thread>-n<count>", so every POST is a real write, not a repeat
--   BENCH_UA      the User-Agent (staff sessions are bound to it: session_protection=strong)
--   BENCH_CLOSE   "1": ask for a new connection per request, as a default reverse proxy does
-- done() prints one line "BENCH_JSON {...}" with the figures bench/load.py reads.

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  method = os.getenv("BENCH_METHOD") or "GET"
  path = os.getenv("BENCH_PATH") or "/"
  expect = tonumber(os.getenv("BENCH_EXPECT") or "200")
  run = os.getenv("BENCH_RUN") or "r"
  unexpected = 0
  first_unexpected = 0
  count = 0
  clients = {}
  local data = os.getenv("BENCH_DATA")
  if data and data ~= "" then
    for line in io.lines(data) do
      local cookie, csrf, fields, own = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t?(.*)$")
      table.insert(clients, {cookie = cookie, csrf = csrf, fields = fields,
                             path = own ~= "" and own or path})
    end
  end
  headers = {["User-Agent"] = os.getenv("BENCH_UA") or "handoff-bench"}
  if os.getenv("BENCH_CLOSE") == "1" then
    headers["Connection"] = "close"
  end
  if method == "POST" then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
end

function request()
  count = count + 1
  if #clients == 0 then
    return wrk.format(method, path, headers, nil)
  end
  -- Threads start at different clients, so they do not all queue on one account.
  local client = clients[((count + tid * 7919) % #clients) + 1]
  headers["Cookie"] = client.cookie
  local body = nil
  if method == "POST" then
    local form_id = string.format("bench-%s-t%d-n%09d", run, tid, count)
    body = "csrf_token=" .. client.csrf .. "&form_id=" .. form_id
    if client.fields ~= "" then
      body = body .. "&" .. client.fields
    end
  end
  return wrk.format(method, client.path, headers, body)
end

function response(status, resp_headers, body)
  if status ~= expect then
    unexpected = unexpected + 1
    if first_unexpected == 0 then
      first_unexpected = status
    end
  end
end

function done(summary, latency, requests)
  local bad, first = 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("unexpected")
    if first == 0 then
      first = thread:get("first_unexpected")
    end
  end
  -- The latency distribution as 1000 quantiles (0.05 %, 0.15 %, ... 99.95 %), so that
  -- bench/load.py can pool several rounds into one p50/p99.
  local quantiles = {}
  for i = 0, 999 do
    quantiles[#quantiles + 1] = string.format("%d", latency:percentile((i + 0.5) / 10))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "unexpected": %d, "first_unexpected": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "quantiles_us": [%s]}\n',
    summary.requests, summary.duration, bad, first, e.connect, e.read, e.write, e.status,
    e.timeout, table.concat(quantiles, ",")))
end
