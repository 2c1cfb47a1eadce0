-- wrk script for the gateway benchmark.
-- Usage: wrk ... -s bench/wrk_rotate.lua URL -- REQUESTS_FILE
-- REQUESTS_FILE holds one request per line, "PATH<TAB>JSON BODY"; each connection sends
-- them in turn. The bearer token comes from the BENCH_TOKEN environment variable. The
-- summary is printed as one line starting with "BENCH " for bench/run.py to parse.

local requests = {}
local index = 0

function init(args)
  local token = os.getenv("BENCH_TOKEN") or ""
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }
  for line in io.lines(args[1]) do
    local tab = line:find("\t", 1, true)
    if tab then
      local path = line:sub(1, tab - 1)
      local body = line:sub(tab + 1)
      table.insert(requests, wrk.format("POST", path, headers, body))
    end
  end
  -- Threads start at different places in the list so they do not move in lockstep.
  index = math.random(#requests) - 1
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,' ..
    '"non2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
