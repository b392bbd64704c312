#!/usr/bin/env python3
"""Table-maintenance benchmark (run it through bench/maintenance.sh, which builds and installs).

Does a table stay fast after a long stream? Two workloads on one throwaway PostgreSQL, each
read from the same WAL by two pgdelta pipelines, one with maintenance on (the defaults), one
with it off:
  insert: an insert-only stream (10M rows by default) in 10k-row transactions;
  update: a table of 200k rows (copied by the pipelines' initial snapshot), then a long
          stream of random-key updates in 1,000-row transactions (copy-on-write MERGE).
Every pipeline catches up with `pipeline start --exit-when-caught-up` under /usr/bin/time.
Per run: mean write time of a batch in the first and in the last tenth of the run (and their
ratio; the target is at most 1.3 with maintenance on), the mean time from one batch to the
next (which also holds decoding and the maintenance steps of the loop), the data files of
the table at the end and the most seen while it ran, compactions, bytes on disk, peak RSS.
"""

import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import Cluster, catch_up, delta_rows, log, summarize_rss  # noqa: E402

SIZES = {
    "quick": dict(insert=200_000, per_tx=10_000, update_rows=20_000, update_steps=50, per_update_tx=1000),
    "default": dict(insert=10_000_000, per_tx=10_000, update_rows=200_000, update_steps=1000,
                    per_update_tx=1000),
}

UPDATE_SQL = """
CREATE OR REPLACE PROCEDURE bench_random_updates(tbl text, key_range bigint, steps int, per_tx int)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM setseed(0.42);
    FOR k IN 1..steps LOOP
        EXECUTE format('UPDATE %I SET amount = amount + 1, status = ''upd'' WHERE id IN
            (SELECT 1 + floor(random() * $1)::bigint FROM generate_series(1, $2))', tbl)
            USING key_range, per_tx;
        COMMIT;
    END LOOP;
END $$;
"""

BATCH_LINE = re.compile(r"^(\S+) .*batch written.*?events=(\d+) elapsed=([\d.]+)(ns|µs|us|ms|s)\b")
FILES_LINE = re.compile(r"Delta table files.*?files=(\d+)")
SCALE = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_log(text):
    """(timestamp s, events, write s) per batch; files seen; compactions (elapsed s)."""
    batches = []
    for line in text.splitlines():
        m = BATCH_LINE.search(line)
        if m:
            at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            batches.append((at, int(m.group(2)), float(m.group(3)) * SCALE[m.group(4)]))
    files = [int(m.group(1)) for m in map(FILES_LINE.search, text.splitlines()) if m]
    compactions = [float(m.group(1)) * SCALE[m.group(2)] for m in
                   (re.search(r"compacted the Delta table.*?elapsed=([\d.]+)(ns|µs|us|ms|s)\b", line)
                    for line in text.splitlines()) if m]
    return batches, files, compactions


def tenths(batches):
    """Mean write time and mean gap to the previous batch, first and last tenth."""
    n = len(batches)
    tenth = max(1, n // 10)
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
    writes = [b[2] for b in batches]
    gaps = [b[0] - a[0] for a, b in zip(batches, batches[1:])]
    return {
        "batches": n,
        "first_tenth_write_s": mean(writes[:tenth]),
        "last_tenth_write_s": mean(writes[-tenth:]),
        "first_tenth_gap_s": mean(gaps[:tenth]),
        "last_tenth_gap_s": mean(gaps[-tenth:]),
        "max_gap_s": max(gaps) if gaps else float("nan"),
    }


def delta_files(path: Path):
    """(active data files, bytes of all Parquet under the table) read by the Python deltalake."""
    from deltalake import DeltaTable
    active = len(DeltaTable(str(path)).file_uris())
    on_disk = sum(p.stat().st_size for p in path.rglob("*.parquet"))
    return active, on_disk


class MaintenanceBench:
    def __init__(self, args):
        self.args = args
        self.size = SIZES[args.size]
        self.work = Path(args.work)
        self.cluster = Cluster(self.work)
        self.results = {"size": args.size, "runs": []}

    def pgdelta(self, config, pipeline, name):
        return catch_up(self.args.pgdelta, config, pipeline, name, self.work,
                        "warn,pgdelta=info,pgdelta::pipeline::maintain=debug")

    def config(self, name, table, slot, maintenance, snapshot=False):
        path = self.work / f"{name}.toml"
        path.write_text(f"""[source]
url = "{self.cluster.url()}"
sslmode = "disable"

[pipelines.{name}]
tables = ["public.{table}"]
delta_root = "{self.work}/delta-{name}"
slot = "{slot}"
publication = "pub_{table}"
snapshot_mode = "{"initial" if snapshot else "never"}"

[pipelines.{name}.maintenance]
enabled = {"true" if maintenance else "false"}
""")
        return path

    def workload(self, name):
        s, c = self.size, self.cluster
        table = f"m_{name}"
        c.psql("bench", f"CALL bench_create_narrow('{table}'); CREATE PUBLICATION pub_{table} FOR TABLE {table}")
        runs = {}
        if name == "update":
            # Loaded before the pipelines start: their initial snapshot copies it, so every
            # batch measured is one of updates.
            c.psql("bench", f"CALL bench_insert('{table}', {s['update_rows']}, {s['per_tx']}, false)")
        for maintenance in (True, False):
            run = f"{table}_{'on' if maintenance else 'off'}"
            runs[run] = (maintenance, self.config(run, table, run, maintenance, snapshot=name == "update"))
            if name == "insert":
                c.psql("bench", f"SELECT pg_create_logical_replication_slot('{run}', 'pgoutput')")
            else:
                self.pgdelta(runs[run][1], run, f"{run}-snapshot").run()
        t0 = time.monotonic()
        if name == "insert":
            c.psql("bench", f"CALL bench_insert('{table}', {s['insert']}, {s['per_tx']}, false)")
            changes = s["insert"]
        else:
            c.psql("bench", f"CALL bench_random_updates('{table}', {s['update_rows']}, {s['update_steps']}, "
                            f"{s['per_update_tx']})")
            changes = s["update_steps"] * s["per_update_tx"]
        log(f"{name}: {changes:,} changes written in {time.monotonic() - t0:.0f} s")
        expected = int(c.psql("bench", f"SELECT count(*) FROM {table}"))
        for run, (maintenance, config) in runs.items():
            m = self.pgdelta(config, run, run).run()
            usage = m.usage()
            batches, files_seen, compactions = parse_log(m.err_file.read_text())
            active, on_disk = delta_files(self.work / f"delta-{run}" / "public" / table)
            rows = delta_rows(self.args.pgdelta, config, run)
            result = {
                "workload": name, "maintenance": maintenance, "changes": changes,
                "rows_per_s": changes / usage["wall_s"], "wall_s": usage["wall_s"], "cpu_s": usage["cpu_s"],
                "peak_rss_mb": usage["peak_rss_mb"], "rss_mb": summarize_rss(m.rss_samples), **tenths(batches),
                "files_end": active, "files_max_seen": max(files_seen, default=active),
                "compactions": len(compactions), "longest_compaction_s": max(compactions, default=0.0),
                "parquet_mb_on_disk": on_disk / 1e6, "delta_rows": rows, "pg_rows": expected,
            }
            if rows != expected:
                log(f"WARNING: {run} holds {rows} rows, PostgreSQL {expected}")
            self.results["runs"].append(result)
            log(f"  {run}: {usage['wall_s']:.1f} s, ratio last/first tenth "
                f"{result['last_tenth_write_s'] / result['first_tenth_write_s']:.2f}, "
                f"{active} files, {usage['peak_rss_mb']:.0f} MB")
            c.psql("bench", f"SELECT pg_drop_replication_slot('{run}')")
        c.psql("bench", f"DROP PUBLICATION pub_{table}; DROP TABLE {table}")

    def run(self):
        self.cluster.start()
        try:
            self.cluster.psql("bench", UPDATE_SQL)
            for name in self.args.workloads:
                self.workload(name)
        finally:
            self.cluster.stop()
        (self.work / "maintenance-results.json").write_text(json.dumps(self.results, indent=2))
        print(render(self.results))


def rss_at(run, key):
    return f"{run['rss_mb'][key]:.0f}" if run.get("rss_mb") else "-"


def render(results):
    lines = [f"pgdelta maintenance benchmark, size {results['size']}", "",
             "| workload | maintenance | changes | rows/s | batches | write s, first tenth | last tenth | "
             "last/first | gap s, first tenth | last tenth | max gap s | files at end | most files seen | "
             "compactions | longest compaction s | Parquet MB on disk | RSS MB peak (half-way, end) | rows equal |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results["runs"]:
        lines.append(
            f"| {r['workload']} | {'on' if r['maintenance'] else 'off'} | {r['changes']:,} | {r['rows_per_s']:,.0f} "
            f"| {r['batches']} | {r['first_tenth_write_s']:.3f} | {r['last_tenth_write_s']:.3f} "
            f"| {r['last_tenth_write_s'] / r['first_tenth_write_s']:.2f} | {r['first_tenth_gap_s']:.3f} "
            f"| {r['last_tenth_gap_s']:.3f} | {r['max_gap_s']:.2f} | {r['files_end']} | {r['files_max_seen']} "
            f"| {r['compactions']} | {r['longest_compaction_s']:.2f} | {r['parquet_mb_on_disk']:.0f} "
            f"| {r['peak_rss_mb']:.0f} ({rss_at(r, 'mid_mb')}, {rss_at(r, 'last_mb')}) | {'yes' if r['delta_rows'] == r['pg_rows'] else 'NO'} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=SIZES, default="default")
    parser.add_argument("--work", required=True)
    parser.add_argument("--pgdelta", required=True)
    parser.add_argument("--workloads", nargs="+", default=["insert", "update"], choices=["insert", "update"])
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=N",
                        help="change one size, e.g. insert=1000000")
    args = parser.parse_args()
    for item in args.override:
        key, value = item.split("=", 1)
        SIZES[args.size][key] = int(value)
    MaintenanceBench(args).run()


if __name__ == "__main__":
    main()
