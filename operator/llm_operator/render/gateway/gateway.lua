-- The gateway's front, run by Envoy's Lua filter on every request (docs/gateway.md). The operator
-- puts the data above this line: GATEWAY_KEY_FILE (nil: no key), MODELS (served name -> its router's
-- cluster, its Service's cluster (nil until the Service has an address) and the file of its
-- upstream key, or "" for none), MODEL_LIST (the body of GET /v1/models), RETRY_AFTER (seconds).
-- Before it runs, the json_to_metadata filter has read the body's "model" into dynamic metadata.
--
-- Every answer of the gateway's own is in OpenAI's error format, so clients show the message.
-- Keys are read from their files on every request: a rotated Secret applies without a restart.

local UPSTREAM_HEADER = "x-llm-gateway-upstream"

-- The APIs the model's router serves (it picks the replica by the policy). The router passes vLLM's
-- other APIs on without the Authorization header, so those go to the model's Service.
local ROUTED = {["/v1/chat/completions"] = true, ["/v1/completions"] = true, ["/v1/embeddings"] = true}

-- vLLM's model APIs. Nothing else reaches a router: its own admin paths (/workers, /add_worker,
-- /flush_cache ...) would let a client add a backend of its choosing.
local function is_model_api(path)
  return path:find("^/v1/") ~= nil or path:find("^/v2/") ~= nil or path == "/rerank" or path == "/score"
    or path == "/pooling" or path == "/classify" or path == "/tokenize" or path == "/detokenize"
end

local function read_key(path)
  local file = io.open(path, "r")
  if file == nil then return nil end
  local value = file:read("*a")
  file:close()
  return (value:gsub("%s+$", ""))
end

local function json_string(text)
  return '"' .. text:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

local function reply(handle, status, body)
  local headers = {[":status"] = tostring(status), ["content-type"] = "application/json"}
  if status == 503 then headers["retry-after"] = RETRY_AFTER end
  handle:respond(headers, body)
end

local function fail(handle, status, code, message, param)
  local kind = status >= 500 and "server_error" or "invalid_request_error"
  reply(handle, status, '{"error":{"message":' .. json_string(message) .. ',"type":"' .. kind .. '","param":'
    .. (param and json_string(param) or "null") .. ',"code":' .. json_string(code) .. '}}')
end

function envoy_on_request(handle)
  local headers = handle:headers()
  headers:remove(UPSTREAM_HEADER)  -- only this script picks the upstream
  if GATEWAY_KEY_FILE ~= nil then
    local key = read_key(GATEWAY_KEY_FILE)
    if key == nil or key == "" or headers:get("authorization") ~= "Bearer " .. key then
      return fail(handle, 401, "invalid_api_key",
        "Missing or wrong API key: send the gateway's key as 'Authorization: Bearer <key>'.")
    end
  end
  local method, path = headers:get(":method"), headers:get(":path")
  local bare_path = path:gsub("%?.*$", "")
  if method == "GET" and bare_path == "/v1/models" then
    return reply(handle, 200, MODEL_LIST)
  end
  if method == "GET" and bare_path == "/health" then
    return reply(handle, 200, "{}")
  end
  if method ~= "POST" or not is_model_api(bare_path) then
    return fail(handle, 404, "not_found",
      "The gateway serves vLLM's model APIs (POST requests that name a model), GET /v1/models and GET /health.")
  end
  local metadata = handle:streamInfo():dynamicMetadata():get("llm_gateway")
  local model = metadata and metadata["model"]
  if model == nil then
    return fail(handle, 400, "model_required",
      "The request names no model: send a JSON body (Content-Type: application/json) whose 'model' is one of GET /v1/models.",
      "model")
  end
  local route = MODELS[model]
  if route == nil then
    return fail(handle, 404, "model_not_found",
      "The model '" .. model .. "' does not exist here: GET /v1/models lists the models this gateway serves.", "model")
  end
  local upstream = ROUTED[bare_path] and route.router or route.service
  if upstream == nil then
    return fail(handle, 503, "model_not_ready", "The model '" .. model .. "' has no Service yet: try again shortly.")
  end
  headers:replace(UPSTREAM_HEADER, upstream)
  if route.key_file == "" then
    headers:remove("authorization")  -- the gateway's key is not the model's
  else
    local upstream_key = read_key(route.key_file)
    if upstream_key == nil then
      return fail(handle, 503, "upstream_key_missing", "The gateway cannot read the API key of model '" .. model .. "'.")
    end
    headers:replace("authorization", "Bearer " .. upstream_key)
  end
  handle:clearRouteCache()
end

-- A 503 means no replica could take the request: none is ready yet, or a model scaled to zero did not
-- wake within the gateway's hold (docs/autoscaling.md). Either way trying again later helps.
function envoy_on_response(handle)
  local headers = handle:headers()
  if headers:get(":status") == "503" and headers:get("retry-after") == nil then
    headers:add("retry-after", RETRY_AFTER)
  end
end
