#!/usr/bin/env python3
"""Times Python's json on one document: json.loads, then json.dumps, N times.

Usage: json_roundtrip.py FILE [N] [--same] [--out PATH]
  N           timed iterations (default 10), after 2 untimed warm-up ones
  --same      dumps the text relish.json.encode writes: compact separators,
              sorted keys, non-ASCII as is (default: json.dumps defaults)
  --out PATH  write the last encoded text to PATH (UTF-8, to compare outputs)
Prints one line per iteration, then a "median" line (milliseconds).
A full GC runs before each iteration, outside the timed region.
"""
import gc
import json
import statistics
import sys
import time


def main():
    args = sys.argv[1:]
    file, n, same, out = None, 10, False, None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--same":
            same = True
        elif a == "--out":
            i += 1
            out = args[i]
        elif file is None:
            file = a
        else:
            n = int(a)
        i += 1
    if file is None:
        sys.exit(__doc__)
    with open(file, "rb") as f:
        text = f.read().decode("utf-8")
    kw = {"separators": (",", ":"), "sort_keys": True, "ensure_ascii": False} if same else {}

    def once():
        gc.collect()
        t0 = time.perf_counter()
        doc = json.loads(text)
        t1 = time.perf_counter()
        s = json.dumps(doc, **kw)
        t2 = time.perf_counter()
        del doc
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3, s

    for _ in range(2):
        once()
    dec, enc, tot, last = [], [], [], None
    for k in range(1, n + 1):
        d, e, last = once()
        dec.append(d)
        enc.append(e)
        tot.append(d + e)
        print("iteration %2d  decode %8.2f ms  encode %8.2f ms  total %8.2f ms" % (k, d, e, d + e))
    print("median        decode %8.2f ms  encode %8.2f ms  total %8.2f ms" % (
        statistics.median(dec), statistics.median(enc), statistics.median(tot)))
    if out:
        with open(out, "wb") as f:
            f.write(last.encode("utf-8"))


if __name__ == "__main__":
    main()
