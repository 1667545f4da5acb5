-- POST the JSON body in the file named by WRK_BODY_FILE to the URL's path.
local here = debug.getinfo(1, "S").source:match("@(.*/)") or "./"
dofile(here .. "report.lua")

local file = assert(io.open(assert(os.getenv("WRK_BODY_FILE"), "set WRK_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
