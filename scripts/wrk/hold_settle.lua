-- wrk script: holds and settlements, as a metered gateway would send them.
--
--   wrk -t2 -c64 -d15s --latency -s scripts/wrk/hold_settle.lua http://127.0.0.1:PORT -- API_KEY [RATE]
--
-- Each request is either POST /v1/holds {"amount":"0.01"} or POST /v1/holds/{id}/settle {"amount":"0.005"} for a
-- hold placed earlier on the same thread: a thread settles the oldest hold it has not settled yet when it has one,
-- and otherwise places a new one, so holds and settlements alternate (half the requests are each).
--
-- RATE (optional, requests per second over all threads; 0 or absent: as fast as possible) paces the run with
-- wrk's delay() hook (Debian's wrk has no -R): each thread hands out send slots RATE/threads per second apart, and
-- a connection waits for its slot. The achieved rate is printed at the end; it is lower than RATE only when the
-- connections cannot keep up (connections / latency < RATE). wrk's latency is measured from the actual send, so
-- it does not include the pacing delay (like wrk, unlike wrk2, it does not correct for coordinated omission).
--
-- At the end it prints: holds placed, settlements, hold+settle pairs per second, other answers by status.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } cg_timespec;
int clock_gettime(int clock_id, cg_timespec *tp);
]]
local timespec = ffi.new("cg_timespec")
local function now_s()
    ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
    return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

-- main state: the threads, to collect their counters in done()
local threads = {}
local thread_count = 0

function setup(thread)
    thread_count = thread_count + 1
    thread:set("id", thread_count)
    table.insert(threads, thread)
end

-- thread state
local api_key
local interval = 0   -- seconds between two send slots of this thread (0: unpaced)
local next_slot = 0
local queue = {}     -- hold ids waiting to be settled, oldest first
local head, tail = 1, 0
local hold_body = '{"amount":"0.01"}'
local settle_body = '{"amount":"0.005"}'
local hold_headers
local settle_headers

placed = 0
settled = 0
refused = 0          -- 402: out of credits
other = 0            -- anything else
other_status = ""    -- the first few unexpected answers, for the report

function init(args)
    api_key = args[1] or os.getenv("CG_API_KEY")
    if api_key == nil or api_key == "" then
        error("usage: wrk ... -s hold_settle.lua URL -- API_KEY [RATE]")
    end
    local rate = tonumber(args[2] or os.getenv("CG_RATE") or "0") or 0
    local threads_total = tonumber(args[3] or os.getenv("CG_THREADS") or "0") or 0
    if rate > 0 then
        if threads_total < 1 then
            error("a paced run needs the thread count as the third argument")
        end
        interval = threads_total / rate
    end
    hold_headers = { ["x-api-key"] = api_key, ["Content-Type"] = "application/json" }
    settle_headers = hold_headers
end

function delay()
    if interval == 0 then
        return 0
    end
    local now = now_s()
    -- A slot missed (the connections were all busy) is not made up later: no bursts after a stall.
    if next_slot < now then
        next_slot = now
    end
    local slot = next_slot
    next_slot = next_slot + interval
    return (slot - now) * 1000 -- milliseconds (wrk truncates to whole ms; the slots keep the average exact)
end

function request()
    if head <= tail then
        local id = queue[head]
        queue[head] = nil
        head = head + 1
        return wrk.format("POST", "/v1/holds/" .. id .. "/settle", settle_headers, settle_body)
    end
    return wrk.format("POST", "/v1/holds", hold_headers, hold_body)
end

function response(status, headers, body)
    if status == 201 then
        local id = string.match(body, '^{"id":"(hold_%w+)"')
        if id then
            placed = placed + 1
            tail = tail + 1
            queue[tail] = id
            return
        end
    elseif status == 200 and string.sub(body, 1, 9) == '{"hold":{' then
        settled = settled + 1
        return
    elseif status == 402 then
        refused = refused + 1
        return
    end
    other = other + 1
    if other <= 3 then
        other_status = other_status .. " " .. status .. ":" .. string.sub(body or "", 1, 120)
    end
end

function done(summary, latency, requests)
    local seconds = summary.duration / 1e6
    local total_placed, total_settled, total_refused, total_other = 0, 0, 0, 0
    local samples = ""
    for _, thread in ipairs(threads) do
        total_placed = total_placed + thread:get("placed")
        total_settled = total_settled + thread:get("settled")
        total_refused = total_refused + thread:get("refused")
        total_other = total_other + thread:get("other")
        samples = samples .. thread:get("other_status")
    end
    io.write(string.format("hold_settle: %.1f s, %d requests, %.0f requests/s achieved\n",
        seconds, summary.requests, summary.requests / seconds))
    io.write(string.format("hold_settle: %d holds placed, %d settled: %.0f hold+settle pairs/s\n",
        total_placed, total_settled, total_settled / seconds))
    io.write(string.format("hold_settle: latency p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
        latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
        latency:percentile(99.9) / 1000, latency.max / 1000))
    io.write(string.format("hold_settle: %d refused (402), %d other answers, %d socket errors%s\n",
        total_refused, total_other,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        samples ~= "" and (" (" .. samples .. " )") or ""))
end
