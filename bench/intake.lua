-- wrk script for bench/claims.py --intake: every request is a new report with its own
-- idempotency key, as a person's first tap on "submit" would be.
-- Keys must never repeat across runs or between the wrk processes of one run (a repeat is a
-- replay, not a new report): each process gets a unique prefix as its script argument.
local counter = 0
local prefix = "wrk"
local contacts = 0  -- each process its own contacts (a second argument), as the users behind it are

function init(args)
  prefix = args[1] or error("pass a unique key prefix: wrk ... -s intake.lua URL -- PREFIX [CONTACT_OFFSET]")
  contacts = tonumber(args[2] or "0")
end

local body = '{"reporter_kind":"channel_shop","service":"messenger","window_start":"2022-10-15T15:30:00+09:00",' ..
             '"window_end":"2022-10-15T22:00:00+09:00","claimed_amount":250000,"contact":"010-%04d-%04d",' ..
             '"description":"bench","evidence":["receipt"]}'

function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. "-" .. counter}
  return wrk.format("POST", "/api/reports", headers, string.format(body, counter % 10000,
                                                                   (contacts + math.floor(counter / 10000)) % 10000))
end

function done(summary, latency, requests)
  io.write(string.format("FIREBREAK requests=%d errors_status=%d connect=%d read=%d write=%d timeout=%d p50_ms=%.1f p99_ms=%.1f\n",
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
