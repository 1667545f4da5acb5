-- GET the URL (wrk's default request), with the JSON report.
local here = debug.getinfo(1, "S").source:match("@(.*/)") or "./"
dofile(here .. "report.lua")
