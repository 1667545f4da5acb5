-- POST WRK_BODY_COUNT distinct multipart bodies (WRK_BODY_DIR/<i>.bin, i = 1..count, boundary
-- WRK_BOUNDARY) once each: every upload is a new image (a repeat would be a cheap duplicate). Then the
-- connections ask for /healthz until the caller interrupts wrk; load.py times the uploads by the
-- index's point count, not by wrk's duration. One wrk thread (-t1).
local here = debug.getinfo(1, "S").source:match("@(.*/)") or "./"
dofile(here .. "report.lua")

local dir = assert(os.getenv("WRK_BODY_DIR"), "set WRK_BODY_DIR")
local count = tonumber((assert(os.getenv("WRK_BODY_COUNT"), "set WRK_BODY_COUNT")))
local headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. assert(os.getenv("WRK_BOUNDARY")) }
local bodies = {}
for i = 1, count do
  local file = assert(io.open(dir .. "/" .. i .. ".bin", "rb"))
  bodies[i] = file:read("*a")
  file:close()
end
-- wrk calls request() once on thread 1's state to verify it (script_verify_request) and discards that
-- request: start at -1 so the discarded call is a /healthz and upload 1 is really sent
local sent = -1

request = function()
  sent = sent + 1
  if sent < 1 then
    return wrk.format("GET", "/healthz")
  end
  if sent > count then
    return wrk.format("GET", "/healthz")
  end
  return wrk.format("POST", nil, headers, bodies[sent])
end
