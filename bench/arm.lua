-- wrk script: enables and settles conversations lat-0 .. lat-(N-1), N from the
-- environment variable CONVERSATIONS (PREFIX replaces "lat-"). Each wrk thread takes its own ids.
local threads = {}
local counter = 0
local n = tonumber(os.getenv("CONVERSATIONS") or "100000")
local stride = tonumber(os.getenv("WRK_THREADS") or "2")
local prefix = os.getenv("PREFIX") or "lat-"
dofile("bench/body.lua")

setup = function(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

request = function()
  local i = (counter * stride + tid) % (2 * n)
  counter = counter + 1
  local id = prefix .. (i % n)
  if i < n then
    return wrk.format("PUT", "/v1/conversations/" .. id .. "/settings",
      {["content-type"] = "application/json"}, '{"enabled":true,"intervalMs":' .. os.getenv("INTERVAL_MS") .. '}')
  end
  return wrk.format("POST", "/v1/conversations/" .. id .. "/turn-settled",
    {["content-type"] = "application/json"}, settle_body(id))
end
