-- Requests are built once in init (wrk's per-request Lua then costs little); each request
-- takes the next token in order, so a run with N tokens sees each token once per N requests.
local reqs = {}
local i = 0

init = function(args)
  local body = ""
  if args[2] then
    local bf = assert(io.open(args[2], "r"))
    body = bf:read("*a")
    bf:close()
  end
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    local headers = {["Content-Type"] = "application/json"}
    if line ~= "-" then headers["Authorization"] = "Bearer " .. line end
    reqs[#reqs + 1] = wrk.format("POST", "/v1/chat/completions", headers, body)
  end
  f:close()
end

request = function()
  i = i % #reqs + 1
  return reqs[i]
end
