#!/usr/bin/env python3
"""Write-mode benchmark (run it through bench/deletion_vectors.sh, which builds and installs).

Updates and deletes on a table that already holds many rows: does a batch cost what it
changes (deletion vectors) or what the table holds (copy-on-write MERGE)? One throwaway
PostgreSQL; per workload a table of `rows` rows (copied to Delta by the pipelines' initial
snapshot), then a stream of changes in 1,000-change transactions:
  uniform: updates of uniformly random keys;
  skewed:  updates of random keys among the newest 1%;
  mixed:   700 inserts of new keys, 200 updates and 100 deletes of random keys per transaction.
With --identity full the tables have REPLICA IDENTITY FULL (the WAL carries whole old rows,
which the deletion-vector mode then uses instead of reading them from the data files).
The same WAL is read by pg_recvlogical (the limit), by a copy-on-write pipeline and by a
deletion-vector pipeline, each alone, under /usr/bin/time. Per run: rows/s and its ratio to
pg_recvlogical, the mean write time of a batch, Parquet and deletion-vector bytes written per
changed row, peak RSS, and whether the Delta table equals PostgreSQL.
"""

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import Cluster, Measured, catch_up, delta_rows, log  # noqa: E402
from maintenance import parse_log  # noqa: E402

SIZES = {
    "quick": dict(rows=20_000, steps=20, per_tx=1000),
    "default": dict(rows=1_000_000, steps=300, per_tx=1000),
}
MODES = ["copy_on_write", "deletion_vectors"]

CHANGES_SQL = """
CREATE OR REPLACE PROCEDURE bench_updates(tbl text, low bigint, high bigint, steps int, per_tx int)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM setseed(0.42);
    FOR k IN 1..steps LOOP
        EXECUTE format('UPDATE %I SET amount = amount + 1, status = ''upd'' WHERE id IN
            (SELECT $1 + floor(random() * ($2 - $1 + 1))::bigint FROM generate_series(1, $3))', tbl)
            USING low, high, per_tx;
        COMMIT;
    END LOOP;
END $$;

CREATE OR REPLACE PROCEDURE bench_mixed_random(tbl text, key_range bigint, steps int)
LANGUAGE plpgsql AS $$
DECLARE
    base bigint;
BEGIN
    PERFORM setseed(0.42);
    FOR k IN 0..steps - 1 LOOP
        base := key_range + k::bigint * 700;
        EXECUTE format('INSERT INTO %I SELECT g, (g %% 1000)::int, (g %% 100000) / 100.0, ''new'', md5(g::text), now()
            FROM generate_series($1, $2) g', tbl) USING base + 1, base + 700;
        EXECUTE format('UPDATE %I SET status = ''paid'', amount = amount + 1 WHERE id IN
            (SELECT 1 + floor(random() * $1)::bigint FROM generate_series(1, 200))', tbl) USING key_range;
        EXECUTE format('DELETE FROM %I WHERE id IN
            (SELECT 1 + floor(random() * $1)::bigint FROM generate_series(1, 100))', tbl) USING key_range;
        COMMIT;
    END LOOP;
END $$;
"""

WORKLOADS = ["uniform", "skewed", "mixed"]


def tree_bytes(path: Path, pattern):
    return sum(p.stat().st_size for p in path.rglob(pattern)) if path.exists() else 0


class WriteModeBench:
    def __init__(self, args):
        self.args = args
        self.size = SIZES[args.size]
        self.work = Path(args.work)
        self.cluster = Cluster(self.work)
        self.results = {"size": args.size, "rows": self.size["rows"], "identity": args.identity,
                        "target_file_mb": args.target_file_mb, "runs": []}

    def config(self, run, table, mode):
        path = self.work / f"{run}.toml"
        path.write_text(f"""[source]
url = "{self.cluster.url()}"
sslmode = "disable"

[pipelines.{run}]
tables = ["public.{table}"]
delta_root = "{self.work}/delta-{run}"
slot = "{run}"
publication = "pub_{table}"
write_mode = "{mode}"
""" + (f"""
[pipelines.{run}.maintenance]
target_file_size_mb = {self.args.target_file_mb}
""" if self.args.target_file_mb else ""))
        return path

    def pgdelta(self, config, run, name):
        return catch_up(self.args.pgdelta, config, run, name, self.work,
                        "warn,pgdelta=info,pgdelta::sink::delta::deletion_vectors=debug")

    def changes_sql(self, name, table):
        s = self.size
        if name == "uniform":
            return f"CALL bench_updates('{table}', 1, {s['rows']}, {s['steps']}, {s['per_tx']})"
        if name == "skewed":
            low = max(1, s["rows"] - s["rows"] // 100 + 1)
            return f"CALL bench_updates('{table}', {low}, {s['rows']}, {s['steps']}, {s['per_tx']})"
        return f"CALL bench_mixed_random('{table}', {s['rows']}, {s['steps']})"

    def workload(self, name):
        s, c = self.size, self.cluster
        table = f"wm_{name}"
        c.psql("bench", f"CALL bench_create_narrow('{table}'); CREATE PUBLICATION pub_{table} FOR TABLE {table}")
        c.psql("bench", f"CALL bench_insert('{table}', {s['rows']}, 10000, false)")
        if self.args.identity == "full":
            c.psql("bench", f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        runs = {}
        for mode in self.args.modes:
            run = f"{table}_{mode}"
            config = self.config(run, table, mode)
            copy = self.pgdelta(config, run, f"{run}-snapshot").run()  # creates the slot, copies the rows
            runs[run] = (mode, config, copy.usage()["wall_s"])
        limit_slot = f"{table}_recvlogical"
        c.psql("bench", f"SELECT pg_create_logical_replication_slot('{limit_slot}', 'pgoutput')")
        t0 = time.monotonic()
        c.psql("bench", self.changes_sql(name, table))
        end_lsn = c.wal_lsn()
        changes = s["steps"] * s["per_tx"]
        log(f"{name}: {changes:,} changes on {s['rows']:,} rows written in {time.monotonic() - t0:.0f} s")
        limit = Measured(f"{table}-recvlogical", [
            str(c.bin / "pg_recvlogical"), "-h", "127.0.0.1", "-p", str(c.port), "-U", "postgres",
            "-d", "bench", "--slot", limit_slot, "--start", "--no-loop",
            "--endpos", f"{end_lsn >> 32:X}/{end_lsn & 0xFFFFFFFF:X}",
            "-o", "proto_version=1", "-o", f"publication_names=pub_{table}", "-f", "/dev/null"],
            self.work).run().usage()
        limit_rate = changes / limit["wall_s"]
        log(f"  pg_recvlogical {limit['wall_s']:.1f} s, {limit_rate:,.0f} rows/s")
        c.psql("bench", f"SELECT pg_drop_replication_slot('{limit_slot}')")
        expected = int(c.psql("bench", f"SELECT count(*) FROM {table}"))
        for run, (mode, config, snapshot_s) in runs.items():
            delta = self.work / f"delta-{run}"
            parquet_before = tree_bytes(delta, "*.parquet")
            vectors_before = tree_bytes(delta, "deletion_vector_*.bin")
            m = self.pgdelta(config, run, run).run()
            usage = m.usage()
            err = m.err_file.read_text()
            batches, _, _ = parse_log(err)
            writes = [b[2] for b in batches]
            index = [float(x) for x in re.findall(r"key index brought up to date.*?rows=(\d+)", err)]
            rows = delta_rows(self.args.pgdelta, config, run)
            written = tree_bytes(delta, "*.parquet") - parquet_before
            vectors = tree_bytes(delta, "deletion_vector_*.bin") - vectors_before
            result = {
                "workload": name, "mode": mode, "identity": self.args.identity, "table_rows": s["rows"], "changes": changes,
                "limit_rows_per_s": limit_rate, "rows_per_s": changes / usage["wall_s"],
                "vs_limit": changes / usage["wall_s"] / limit_rate, "wall_s": usage["wall_s"],
                "batches": len(writes), "mean_write_s": sum(writes) / len(writes) if writes else float("nan"),
                "parquet_bytes_per_change": written / changes, "dv_bytes_per_change": vectors / changes,
                "parquet_bytes_per_table_row": parquet_before / s["rows"], "snapshot_s": snapshot_s,
                "peak_rss_mb": usage["peak_rss_mb"], "cpu_s": usage["cpu_s"],
                "indexed_rows": int(max(index)) if index else None,
                "delta_rows": rows, "pg_rows": expected,
            }
            if rows != expected:
                log(f"WARNING: {run} holds {rows} rows, PostgreSQL {expected}")
            self.results["runs"].append(result)
            log(f"  {mode}: {usage['wall_s']:.1f} s, {result['rows_per_s']:,.0f} rows/s "
                f"({result['vs_limit']:.2f} of the limit), mean batch {result['mean_write_s']:.3f} s, "
                f"{usage['peak_rss_mb']:.0f} MB")
            c.psql("bench", f"SELECT pg_drop_replication_slot('{run}')")
        c.psql("bench", f"DROP PUBLICATION pub_{table}; DROP TABLE {table}")

    def run(self):
        self.cluster.start()
        try:
            self.cluster.psql("bench", CHANGES_SQL)
            for name in self.args.workloads:
                self.workload(name)
        finally:
            self.cluster.stop()
        (self.work / "write-mode-results.json").write_text(json.dumps(self.results, indent=2))
        print(render(self.results))


def render(results):
    lines = [f"pgdelta write-mode benchmark, size {results['size']}, {results['rows']:,}-row tables, "
             f"replica identity {results['identity']}, target file size "
             f"{str(results['target_file_mb']) + ' MiB' if results.get('target_file_mb') else 'default'}", "",
             "| workload | write mode | changes | pg_recvlogical rows/s | pgdelta rows/s | vs limit | batches | "
             "mean batch write s | Parquet bytes per change | DV bytes per change | Parquet bytes per table row | "
             "snapshot s | peak RSS MB | CPU s | rows equal |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results["runs"]:
        lines.append(
            f"| {r['workload']} | {r['mode']} | {r['changes']:,} | {r['limit_rows_per_s']:,.0f} "
            f"| {r['rows_per_s']:,.0f} | {r['vs_limit']:.2f} | {r['batches']} | {r['mean_write_s']:.3f} "
            f"| {r['parquet_bytes_per_change']:,.0f} | {r['dv_bytes_per_change']:,.0f} "
            f"| {r['parquet_bytes_per_table_row']:,.0f} | {r.get('snapshot_s', float('nan')):.1f} | {r['peak_rss_mb']:.0f} "
            f"| {r['cpu_s']:.1f} | {'yes' if r['delta_rows'] == r['pg_rows'] else 'NO'} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=SIZES, default="default")
    parser.add_argument("--work", required=True)
    parser.add_argument("--pgdelta", required=True)
    parser.add_argument("--workloads", nargs="+", default=WORKLOADS, choices=WORKLOADS)
    parser.add_argument("--identity", choices=["default", "full"], default="default",
                        help="REPLICA IDENTITY of the tables (full: the WAL carries whole old rows)")
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--target-file-mb", type=int, default=None,
                        help="maintenance.target_file_size_mb of the pipelines (default: pgdelta's)")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=N",
                        help="change one size, e.g. rows=10000000")
    args = parser.parse_args()
    for item in args.override:
        key, value = item.split("=", 1)
        SIZES[args.size][key] = int(value)
    WriteModeBench(args).run()


if __name__ == "__main__":
    main()
