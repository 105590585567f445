-- wrk script: POST an acknowledgement to a different check-in link each time, from the file
-- the server wrote (path<TAB>body per line), as phones answering one warning would. Threads
-- take disjoint slices, so no link is answered twice while the file lasts.
local reqs = {}
local i, last = 0, 0
local threads, counter = {}, 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local file = args[1] or "/tmp/checkin-requests.txt"
  for line in io.lines(file) do
    local path, body = line:match("^(%S+)\t(.*)$")
    if path then
      reqs[#reqs + 1] = wrk.format("POST", path, {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["Host"] = wrk.host .. ":" .. wrk.port,
      }, body)
    end
  end
  local n = tonumber(args[2] or "2")
  local slice = math.floor(#reqs / n)
  i = id * slice
  last = i + slice
end

function request()
  i = i + 1
  if i > last then i = last end -- past the slice: repeats (counted as such by the server)
  return reqs[i]
end
