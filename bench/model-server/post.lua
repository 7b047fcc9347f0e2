-- wrk script: POST the body in $WRK_BODY_FILE as JSON to the URL given on the command line.
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

-- Report non-2xx answers so a run that only produced errors is not taken as fast.
-- (No per-response hook: it would slow wrk down.)
function done(summary, latency, requests)
  io.write(string.format("non-2xx: %d\n", summary.errors.status))
end
