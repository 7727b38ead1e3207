-- wrk script: sends the bearer token in WRK_TOKEN (if any), tallies responses by
-- status, X-Scan-Source and X-Served-By, and prints one line "RESULT {json}".

local token = os.getenv("WRK_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

-- WRK_IF_NONE_MATCH: an entity tag to send back, for conditional (304) reads.
local tag = os.getenv("WRK_IF_NONE_MATCH")
if tag and tag ~= "" then
  wrk.headers["If-None-Match"] = tag
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  tally = {}
end

local function bump(key)
  tally[key] = (tally[key] or 0) + 1
end

function response(status, headers, body)
  local source, worker = "none", "none"
  for name, value in pairs(headers) do
    local lower = string.lower(name)
    if lower == "x-scan-source" then source = value end
    if lower == "x-served-by" then worker = value end
  end
  bump("status=" .. status)
  bump("source=" .. source)
  bump("worker=" .. worker)
  bump("bytes=" .. #body)
end

local function merged()
  local total = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("tally") or {}
    for key, n in pairs(counts) do
      total[key] = (total[key] or 0) + n
    end
  end
  return total
end

function done(summary, latency, requests)
  local errors = summary.errors
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"socket_errors":%d', errors.connect + errors.read + errors.write + errors.timeout),
    string.format('"http_errors":%d', errors.status),
    string.format('"p50_us":%d', latency:percentile(50)),
    string.format('"p99_us":%d', latency:percentile(99)),
  }
  local counts = {}
  for key, n in pairs(merged()) do
    table.insert(counts, string.format('"%s":%d', key, n))
  end
  table.insert(parts, '"tally":{' .. table.concat(counts, ",") .. "}")
  io.write("RESULT {" .. table.concat(parts, ",") .. "}\n")
end
