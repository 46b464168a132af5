-- wrk script: alternating turn-started / turn-settled over 10 000 conversations.
local counter = 0
dofile("bench/body.lua")

request = function()
  counter = counter + 1
  local id = "bench-" .. (counter % 10000)
  if counter % 2 == 0 then
    return wrk.format("POST", "/v1/conversations/" .. id .. "/turn-started", {}, "")
  end
  return wrk.format("POST", "/v1/conversations/" .. id .. "/turn-settled",
    {["content-type"] = "application/json"}, settle_body(id))
end
