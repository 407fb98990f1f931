"""tilefn's load-test harness: ``python -m loadtest`` (``make loadtest``).

::

    __main__   flags -> LoadConfig; warm-up, constant-rate run, saturation search; report
    _config    the frozen settings and the flag parsers (mix, sizes, ranges)
    _workloads trivial / array / large / fail: one prebuilt request each; the mix picker
    _target    the channel (plaintext or TLS), the token as metadata, one call -> Outcome
    _runner    open-model arrivals at intended times, concurrency cap -> Samples
    _progress  the live line on stderr
    _stats     percentiles, counts by status code, per-second timeline -> report dicts
    _saturate  rate steps until p99 or unexpected errors break a threshold
    _report    report.json, report.md, latency.html
    _plot      inline-SVG charts for latency.html

It is a development tool next to the package, not part of the installed ``tilefn``.
"""
