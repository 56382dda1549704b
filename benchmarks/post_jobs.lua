-- wrk script: POST /jobs with one photo as multipart/form-data.
-- Usage: wrk -s benchmarks/post_jobs.lua URL/jobs   (ROADSIGNS_BENCH_PHOTO names the photo)
-- errors counts connection failures, timeouts and any answer other than 2xx/3xx.
local path = os.getenv("ROADSIGNS_BENCH_PHOTO") or "tests/data/photos/00330.jpg"
local f = assert(io.open(path, "rb"))
local photo = f:read("*a")
f:close()
local boundary = "----roadsignsbench7d1f"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n"
  .. 'Content-Disposition: form-data; name="file"; filename="bench.jpg"\r\n'
  .. "Content-Type: image/jpeg\r\n\r\n" .. photo .. "\r\n--" .. boundary .. "--\r\n"

done = function(summary, latency, requests)
  io.write(string.format('WRK_JSON {"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p90_ms": %.2f, '
    .. '"p99_ms": %.2f, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
