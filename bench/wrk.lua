-- wrk script for bench/run: one fixed request, one JSON line of results.
--
--   wrk ... URL -- GET
--   wrk ... URL -- POST '{"model":"bench",...}'
--
-- The request is built once per thread (no request()/response() callbacks),
-- so wrk stays as cheap as possible on a 2-core machine.  done() prints one
-- JSON object on a line starting with "BENCHJSON "; bench/run picks it up.

function init(args)
   wrk.method = args[1] or "GET"
   if wrk.method == "POST" then
      wrk.body = args[2] or "{}"
      wrk.headers["Content-Type"] = "application/json"
   end
   wrk.headers["Accept"] = "application/json"
   wrk.headers["User-Agent"] = "agpu-bench/wrk"
end

function done(summary, latency, requests)
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"rps":%.1f,"lat_mean_us":%.1f,"lat_min_us":%d,"lat_max_us":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      summary.requests / secs, latency.mean, latency.min, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9),
      e.connect, e.read, e.write, e.status, e.timeout))
end
