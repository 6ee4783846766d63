-- wrk script for bench/claims.py --intake --flood: anonymous hostile traffic at the claims service
-- beside the intake load: status lookups that guess receipts, and review actions without a
-- session. Every request is refused (429 once the source's limit is reached, 401 for review);
-- the point is what the refusals cost intake.
local counter = 0

function request()
  counter = counter + 1
  if counter % 2 == 0 then
    return wrk.format("POST", "/api/reports/status", {["Content-Type"] = "application/json"},
                      string.format('{"receipt":"FB-GUESS%06d","contact":"010-0000-%04d"}', counter % 1000000, counter % 10000))
  end
  return wrk.format("POST", "/review/bulk-approve", {["Content-Type"] = "application/x-www-form-urlencoded"}, "kind=")
end

function done(summary, latency, requests)
  io.write(string.format("FLOOD requests=%d errors_status=%d\n", summary.requests, summary.errors.status))
end
