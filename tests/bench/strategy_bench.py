#!/usr/bin/env python3
"""Helpers of tests/bench/strategy.sh (the progressive-delivery benchmark).

  poll SERVER CA VERSION TRACE STOPFILE
      GET SERVER/_control/traffic every 50 ms and append one line per poll to
      TRACE: "EPOCH REQUESTS LIVE_PODS" for the pods of VERSION (their
      request counters summed; the ones not deleted); stops 1.5 s after
      STOPFILE appears.
  abort EVENTS TRACE SERVER CA VERSION LABEL [FLIP_EPOCH]
      one abort-latency result line from a run's `--output json` events, its
      traffic trace and the double's pod events.
  time OUT COMMAND...
      runs COMMAND (stdout to OUT) and prints "WALL USER SYS" in seconds,
      from wait4's rusage (microseconds, not the 10 ms ticks of /proc).
  summary RESULTS
      medians and worst cases of the result lines.
"""
import json
import os
import ssl
import statistics
import sys
import time
import urllib.request
from datetime import datetime, timezone


def get(server, ca, path):
    ctx = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(server + path, context=ctx, timeout=5) as r:
        return json.load(r)


def poll(server, ca, version, trace, stopfile):
    period, stop_at = 0.05, None
    nxt = time.time()
    with open(trace, "w") as out:
        while True:
            t = get(server, ca, "/_control/traffic")
            now = time.time()
            pods = [p for p in t["pods"] if p["version"] == version]
            out.write("%.4f %.6f %d\n" % (now, sum(p["requests"] for p in pods),
                                          sum(1 for p in pods if not p["deleted"])))
            out.flush()
            if stop_at is None and os.path.exists(stopfile):
                stop_at = now + 1.5
            if stop_at is not None and now >= stop_at:
                return
            nxt += period
            time.sleep(max(0.0, nxt - time.time()))


def epoch(ts):
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def abort(events, trace, server, ca, version, label, flip=None):
    ev = [json.loads(line) for line in open(events) if line.startswith("{")]
    first = lambda pred: next((epoch(e["ts"]) for e in ev if pred(e)), None)
    started = first(lambda e: e["event"] == "run_started")
    fail = first(lambda e: e["event"] == "log" and e["message"].startswith("request-success-rate")
                 and "✗" in e["message"])
    rb_start = first(lambda e: e["event"] == "rollback_started")
    rb_end = first(lambda e: e["event"] == "rollback_finished")
    finished = [e for e in ev if e["event"] == "run_finished"]
    undos = sum(1 for e in ev if e["event"] == "undo")
    if fail is None or rb_start is None or not finished:
        print("%s FAILED-RUN no failing measurement or no rollback in %s" % (label, events))
        return
    rows = [tuple(map(float, line.split())) for line in open(trace)]
    final = rows[-1][1]
    # the first poll from which the version's counter never grows again
    off = next(t for t, n, _ in rows if n >= final)
    # the double's own record: the real time the last of the version's pods
    # was deleted (the router skips it from the next pass on)
    pev = get(server, ca, "/_control/events?kind=Pod")
    pev = pev if isinstance(pev, list) else pev.get("items", [])
    gone = [e["time"] for e in pev if e["type"] == "DELETED"
            and (e["object"]["metadata"].get("labels") or {}).get("version") == version]
    term = [e["time"] for e in pev if e["type"] == "MODIFIED" and e["object"]["metadata"].get("deletionTimestamp")
            and (e["object"]["metadata"].get("labels") or {}).get("version") == version]
    last_pod = max(term + gone) if gone or term else float("nan")
    # the rollback's API requests (the double's request log) and the time the
    # double took to answer them
    reqs = [r for r in get(server, ca, "/_control/requests") if rb_start - 0.002 <= r["time"] <= rb_end]
    # the poll before `off`: the last increase came between the two
    before = max((t for t, _, _ in rows if t < off), default=off)
    ms = lambda a, b: (b - a) * 1000
    line = ("abort %s latency=%.0f detect_to_rollback=%.0f rollback_to_last_pod=%.0f last_pod_to_off=%.0f "
            "rollback=%.0f undos=%d status=%s exit=%s first_fail_after_start=%.0f"
            % (label, ms(fail, off), ms(fail, rb_start), ms(rb_start, last_pod), ms(last_pod, off),
               ms(rb_start, rb_end), undos, finished[0]["status"], finished[0]["exit_code"],
               ms(started, fail)))
    line += " poll_before=%.0f fail_to_last_pod=%.0f rollback_requests=%d (%s) served_in=%.1f" % (
        ms(fail, before), ms(fail, last_pod), len(reqs), ",".join(r["method"] for r in reqs),
        sum(r["elapsed"] for r in reqs) * 1000)
    if flip is not None:
        line += " flip_to_fail=%.0f flip_to_off=%.0f" % (ms(flip, fail), ms(flip, off))
    print(line)


def timed(out, *cmd):
    import subprocess
    t0 = time.monotonic()
    with open(out, "w") as f:
        p = subprocess.Popen(cmd, stdout=f)
        _, status, ru = os.wait4(p.pid, 0)
    print("%.3f %.6f %.6f %d" % (time.monotonic() - t0, ru.ru_utime, ru.ru_stime, os.waitstatus_to_exitcode(status)))


LEGEND = """\
latency               the first failing measurement (its --output json event) -> the first 50 ms poll of
                      /_control/traffic after which the version's counter never grew (the double credits
                      traffic at its 50 ms passes, so this is +-50 ms; below 0: the last pass that paid the
                      canary came before the failing measurement was logged)
fail_to_last_pod      the same -> the double's event deleting the version's last pod (exact: the router
                      pays it nothing from then on)
flip_to_fail/_off     the image turning bad (POST /_control/images) -> the failing measurement / the counter
detect_to_rollback    the failing measurement -> the rollback_started event (the abort inside relish)
rollback_to_last_pod  rollback_started -> the last pod deleted (the undo's API calls, the double's controller)
rollback              rollback_started -> rollback_finished"""


def summary(results):
    print(LEGEND)
    rows = []
    for line in open(results):
        f = line.split()
        if len(f) > 2 and f[0] == "abort" and "=" in f[2]:
            rows.append((f[1], dict((k, v) for k, v in (x.split("=", 1) for x in f[2:] if "=" in x))))
    for label in sorted(set(r[0] for r in rows), key=lambda s: (s.split("-")[0], float(s.split("-")[-1].rstrip("s")))):
        rs = [r for l, r in rows if l == label]
        for key in ("latency", "fail_to_last_pod", "flip_to_fail", "flip_to_off", "detect_to_rollback",
                    "rollback_to_last_pod", "rollback"):
            vs = [float(r[key]) for r in rs if key in r]
            if vs:
                print("%-14s %-22s median %7.0f ms  worst %7.0f ms  best %7.0f ms  (%d runs)"
                      % (label, key, statistics.median(vs), max(vs), min(vs), len(vs)))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "poll":
        poll(*args)
    elif cmd == "abort":
        abort(*args[:6], float(args[6]) if len(args) > 6 else None)
    elif cmd == "time":
        timed(*args)
    elif cmd == "summary":
        summary(*args)
    else:
        sys.exit(__doc__)
