-- wrk script: POST a rotating set of CDS Hooks bodies, each with the next unused JWT.
-- wrk -s bench/requests.lua URL -- PATH BODY_LIST TOKEN_FILE
local bodies, tokens = {}, {}
local bi, ti = 0, 0
local path

local function read(name)
  local f = assert(io.open(name, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  path = args[1]
  for name in io.lines(args[2]) do table.insert(bodies, read(name)) end
  if args[3] and args[3] ~= "-" then
    for line in io.lines(args[3]) do table.insert(tokens, line) end
  end
end

function request()
  bi = bi % #bodies + 1
  local headers = { ["Content-Type"] = "application/json" }
  if #tokens > 0 then
    ti = ti % #tokens + 1
    headers["Authorization"] = "Bearer " .. tokens[ti]
  end
  return wrk.format("POST", path, headers, bodies[bi])
end

function done(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "status_errors": %d, "connect_errors": %d, ' ..
    '"timeouts": %d, "p50": %d, "p95": %d, "p99": %d, "max": %d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max))
end
