-- A turn-settled body for conversation `id`: a system prompt of SYSTEM_KB
-- kilobytes every conversation shares (env, default a short one) and a
-- message of its own, ~2 KB when SYSTEM_KB is set.
local kb = tonumber(os.getenv("SYSTEM_KB") or "0")
local system = "You are a benchmark."
local own = ""
if kb > 0 then
  system = string.rep("You are a careful coding agent in a large repository. ", math.floor(kb * 1024 / 54))
  own = string.rep(" with its own details", 90)
end

function settle_body(id)
  return '{"request":{"model":"claude-bench","max_tokens":256,"system":[{"type":"text","text":"' .. system ..
    '","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hi from ' .. id .. own .. '"}]}}'
end
