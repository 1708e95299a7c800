-- Run by Envoy's Lua filter before json_to_metadata, which reads a body's "model" only when the
-- Content-Type is exactly "application/json". Clients also send "application/json; charset=utf-8"
-- (OkHttp, axios, .NET's StringContent) or "Application/JSON": a media type is case-insensitive and
-- may carry parameters (RFC 9110), and JSON is UTF-8 (RFC 8259), so such a header becomes the bare
-- type here. vLLM accepts either.

function envoy_on_request(handle)
  local headers = handle:headers()
  local value = headers:get("content-type")
  if value == nil or value == "application/json" then
    return
  end
  local media_type = value:match("^%s*([^;%s]+)")
  if media_type ~= nil and media_type:lower() == "application/json" then
    headers:replace("content-type", "application/json")
  end
end
