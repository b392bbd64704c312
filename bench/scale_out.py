#!/usr/bin/env python3
"""Kafka-mode scale-out benchmark (issue 18; run it through bench/scale_out.sh, which builds
and installs).

How much of the work each member of a consumer group does, and whether total throughput holds
as members are added:
  1. a throwaway PostgreSQL (bench.py's Cluster) with public.orders, seeded with `seed` rows,
     and a publication for it and a stop-marker table;
  2. the real Debezium PostgreSQL connector (embedded engine, tests/support/debezium_capture.py;
     pgoutput, JSON converter with schemas, snapshot.mode initial, tombstones off) captures the
     seed rows (op r) and a workload of 1,000-change transactions, 70/20/10
     inserts/updates/deletes, into one JSON Lines file, once per run of this script;
  3. a tansu broker (in-memory storage) gets topic shop.public.orders with `partitions`
     partitions, and every captured record is produced to it, keyed by its Debezium key
     (librdkafka's murmur2 partitioner, one record per batch as tansu 0.6 needs), before any
     consumer starts, so every run reads the same records;
  4. for each member count N: a fresh Delta root and consumer group, N processes of
     `pgdelta pipeline start shop --exit-when-caught-up --no-http` started together, each
     under /usr/bin/time -v and with its own PGDELTA_PIPELINES_SHOP_MEMBER. Per member: wall
     and CPU seconds, peak RSS, events applied ("batch written ... events=N" log lines),
     commits and Kafka records in the Delta log (commitInfo pgdelta.member and
     pgdelta.kafkaOffsets), the partitions assigned and revoked. Total wall = first start to
     last exit. At the end the Delta table must equal PostgreSQL row for row, and the
     commits' offsets must cover every record of every partition exactly once.
Results: a Markdown table on stdout and results.json in the work directory.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench import Cluster, Measured, free_port, log  # noqa: E402

SIZES = {
    "quick": dict(changes=10_000, seed=2_000),
    "default": dict(changes=200_000, seed=10_000),
}
PIPELINE = "shop"
TOPIC = "shop.public.orders"
STOP_TABLE = "public.stop_marker"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

SETUP_SQL = """
CREATE TABLE public.orders (id int8 PRIMARY KEY, customer_id int8, amount numeric(10,2),
    status text, note text);
CREATE TABLE public.stop_marker (id int PRIMARY KEY);
CREATE PUBLICATION dbz_pub FOR TABLE public.orders, public.stop_marker;
INSERT INTO public.orders SELECT g, 1 + g % 1000, (g % 100000) / 100.0, 'new', md5(g::text)
    FROM generate_series(1, {seed}) g;
-- Step k: 700 new rows, and 200 updates and 100 deletes of the rows step k-1 inserted (the
-- seed's last 700 for step 0), in one transaction of exactly 1,000 changes.
CREATE PROCEDURE scale_out_workload(seed bigint, steps int) LANGUAGE plpgsql AS $$
DECLARE
    base bigint;
    prev bigint;
BEGIN
    FOR k IN 0..steps - 1 LOOP
        base := seed + k::bigint * 700;
        prev := base - 700;
        INSERT INTO public.orders SELECT g, 1 + g % 1000, (g % 100000) / 100.0, 'new', md5(g::text)
            FROM generate_series(base + 1, base + 700) g;
        UPDATE public.orders SET status = 'paid', amount = amount + 1, note = 'step ' || k
            WHERE id BETWEEN prev + 1 AND prev + 200;
        DELETE FROM public.orders WHERE id BETWEEN prev + 601 AND prev + 700;
        COMMIT;
    END LOOP;
END $$;
"""

PG_ROWS = "SELECT id, customer_id, amount, status, note FROM public.orders ORDER BY id"


# ---- PostgreSQL and Debezium ---------------------------------------------------------------

def capture(cluster, work: Path, size):
    """Seeds the table, captures the seed (snapshot) and the workload with Debezium; returns
    the path of the JSON Lines file with the records of TOPIC."""
    seed, steps = size["seed"], size["changes"] // 1000
    assert seed >= 700, "the first workload step updates and deletes seed rows"
    cluster.psql("bench", SETUP_SQL.format(seed=seed))
    output = work / "capture.jsonl"
    properties = {
        "name": PIPELINE,
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "offset.storage": "org.apache.kafka.connect.storage.MemoryOffsetBackingStore",
        "offset.flush.interval.ms": "1000",
        "database.hostname": "127.0.0.1",
        "database.port": str(cluster.port),
        "database.user": "postgres",
        "database.password": "postgres",
        "database.dbname": "bench",
        "topic.prefix": "shop",
        "plugin.name": "pgoutput",
        "slot.name": "dbz_shop",
        "publication.name": "dbz_pub",
        "publication.autocreate.mode": "disabled",
        "snapshot.mode": "initial",
        "table.include.list": f"public.orders,{STOP_TABLE}",
        "skipped.operations": "none",
        "interval.handling.mode": "string",
        # One record per change: no tombstone after each delete (pgdelta would skip them).
        "tombstones.on.delete": "false",
        "converter.schemas.enable": "true",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
    }
    timeout = 600 + (seed + size["changes"]) / 100
    spec = work / "capture-spec.json"
    spec.write_text(json.dumps({"until_table": STOP_TABLE, "timeout_s": timeout,
                                "runs": [{"name": PIPELINE, "output": str(output), "properties": properties}]}))
    output.unlink(missing_ok=True)
    started = time.monotonic()
    capture_log = work / "capture.log"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests/support/debezium_capture.py"), str(spec)],
                            cwd=work, stdin=subprocess.DEVNULL, stdout=open(capture_log, "w"),
                            stderr=subprocess.STDOUT)
    try:
        # The seed arrives as snapshot records: once all are there, the slot exists and every
        # later change is streamed.
        deadline = time.monotonic() + 300
        while count_lines(output, TOPIC) < seed:
            if proc.poll() is not None:
                raise RuntimeError(f"Debezium capture exited early; see {capture_log}:\n"
                                   + tail(capture_log))
            if time.monotonic() > deadline:
                raise RuntimeError(f"Debezium did not snapshot {seed} rows in time; see {capture_log}")
            time.sleep(0.5)
        log(f"Debezium snapshot of {seed:,} rows captured; writing {steps} transactions of 1,000 changes")
        cluster.psql("bench", f"CALL scale_out_workload({seed}, {steps})")
        cluster.psql("bench", "INSERT INTO public.stop_marker VALUES (1)")
        rc = proc.wait(timeout=timeout)
        if rc != 0:
            raise RuntimeError(f"Debezium capture failed (exit {rc}); see {capture_log}:\n" + tail(capture_log))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = [json.loads(line) for line in output.read_text().splitlines() if line.endswith("}")]
    records = [r for r in records if r["topic"] == TOPIC]
    ops = {}
    for r in records:
        op = json.loads(r["value"])["payload"]["op"] if r["value"] else "tombstone"
        ops[op] = ops.get(op, 0) + 1
    expected = seed + size["changes"]
    if len(records) != expected:
        raise RuntimeError(f"Debezium captured {len(records)} {TOPIC} records, expected {expected} ({ops})")
    log(f"captured {len(records):,} records in {time.monotonic() - started:.1f} s: {ops}")
    return records, ops


def count_lines(path: Path, topic):
    try:
        with open(path, "rb") as f:
            return f.read().count(f'"topic": "{topic}"'.encode())
    except OSError:
        return 0


def tail(path: Path, lines=40):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---- tansu ---------------------------------------------------------------------------------

class Tansu:
    """tansu with in-memory storage on a free port, as tests/harness/kafka.rs starts it."""

    def __init__(self, binary, work: Path):
        self.binary, self.work = binary, work
        self.port = free_port()
        self.proc = None

    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                      "--storage-engine", "memory://tansu/"],
                                     stdin=subprocess.DEVNULL, stdout=open(self.work / "tansu.log", "w"),
                                     stderr=open(self.work / "tansu.err", "w"))
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tansu did not listen on {self.port}; see {self.work}/tansu.err")
                time.sleep(0.1)
        log(f"tansu listening on {self.bootstrap()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_s(self):
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def create_topic(self, topic, partitions):
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap()})
        for name, future in admin.create_topics([NewTopic(topic, partitions, 1)]).items():
            future.result(timeout=30)
            log(f"created topic {name} with {partitions} partitions")

    def produce(self, records):
        """Produces every record keyed by its key, in order; returns the records per partition."""
        from confluent_kafka import Producer

        producer = Producer({
            "bootstrap.servers": self.bootstrap(),
            # Every record is queued at once; with one in flight they wait their turn.
            "message.timeout.ms": "0",
            "enable.idempotence": "false",
            "partitioner": "murmur2_random",
            "max.in.flight.requests.per.connection": "1",
            # tansu 0.6 cannot fetch from an offset inside a record batch: one record per batch.
            "batch.num.messages": "1",
            "linger.ms": "0",
        })
        per_partition, errors = {}, []

        def delivered(error, message):
            if error is not None:
                errors.append(str(error))
            else:
                per_partition[message.partition()] = per_partition.get(message.partition(), 0) + 1

        started = time.monotonic()
        for r in records:
            while True:
                try:
                    producer.produce(r["topic"], key=None if r["key"] is None else r["key"].encode(),
                                     value=None if r["value"] is None else r["value"].encode(),
                                     on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        left = producer.flush(120)
        if errors or left:
            raise RuntimeError(f"produce failed: {left} undelivered, errors {errors[:5]}")
        log(f"produced {len(records):,} records in {time.monotonic() - started:.1f} s; per partition "
            + ", ".join(f"{p}: {n:,}" for p, n in sorted(per_partition.items())))
        return dict(sorted(per_partition.items()))


# ---- one run of N members ------------------------------------------------------------------

def write_config(work: Path, cluster, tansu, delta_root: Path, batch_size, consumer):
    path = work / f"{delta_root.name}.toml"
    extra = f"batch_size = {batch_size}\n" if batch_size else ""
    path.write_text(f"""[source]
url = "{cluster.url()}"
sslmode = "disable"

[pipelines.{PIPELINE}]
mode = "kafka"
tables = ["public.orders"]
delta_root = "{delta_root}"
{extra}
[pipelines.{PIPELINE}.kafka]
bootstrap_servers = "{tansu.bootstrap()}"
topic_prefix = "shop"

[pipelines.{PIPELINE}.kafka.consumer]
"session.timeout.ms" = "6000"
"fetch.wait.max.ms" = "100"
""" + "".join(f'"{key}" = "{value}"\n' for key, value in consumer))
    return path


def run_members(args, work: Path, cluster, tansu, n, records_total, partitions):
    delta_root = work / f"delta-n{n}"
    config = write_config(work, cluster, tansu, delta_root, args.batch_size,
                          [item.split("=", 1) for item in args.consumer])
    group = f"pgdelta-shop-scale-{n}-{int(time.time())}"
    members = []
    for i in range(1, n + 1):
        name = f"n{n}-m{i}"
        # No PGDELTA_LOG: pgdelta's default filter (warn,pgdelta=info less the Delta libraries'
        # notes of a normal run), so the warnings counted below are the ones a user would see.
        env = {"PATH": "/usr/bin:/bin",
               f"PGDELTA_PIPELINES_{PIPELINE.upper()}_MEMBER": name,
               f"PGDELTA_PIPELINES_{PIPELINE.upper()}_KAFKA_GROUP_ID": group,
               **{k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}
        members.append(Measured(name, [args.pgdelta, "--config", str(config), "pipeline", "start", PIPELINE,
                                       "--exit-when-caught-up", "--no-http"], work, env=env))
    log(f"{n} member(s), group {group}, Delta root {delta_root}")
    tansu_cpu = tansu.cpu_s()
    first_start = time.monotonic()
    started_at = {}
    for m in members:
        started_at[m.name] = time.time()
        m.start()
    ended = {}
    deadline = first_start + args.timeout
    while len(ended) < n:
        for m in members:
            if m.name not in ended and m.proc.poll() is not None:
                ended[m.name] = time.monotonic()
        if time.monotonic() > deadline:
            for m in members:
                pid = m.child_pid() if m.proc.poll() is None else None
                if pid:
                    os.kill(pid, signal.SIGTERM)
            raise RuntimeError(f"{n} members did not catch up in {args.timeout} s; logs in {work}/n{n}-m*.err")
        time.sleep(0.02)
    wall = max(ended.values()) - first_start
    clock = time.time() - time.monotonic()
    exited_at = {name: at + clock for name, at in ended.items()}
    tansu_cpu = tansu.cpu_s() - tansu_cpu
    for m in members:
        m.wait()  # raises with the log's tail when a member failed
        m.wall = ended[m.name] - m.started

    commits = delta_commits(delta_root / "public" / "orders", partitions)
    rows = []
    for m in members:
        usage = m.usage()
        info = parse_member_log(m.err_file, started_at[m.name], exited_at)
        mine = commits["members"].get(m.name, {"commits": 0, "kafka_records": 0})
        rows.append({"member": m.name, "wall_s": m.wall, "cpu_s": usage["cpu_s"],
                     "peak_rss_mb": usage["peak_rss_mb"], **info,
                     "commits": mine["commits"], "kafka_records": mine["kafka_records"]})
    cpu = sum(r["cpu_s"] for r in rows)
    result = {
        "members": n,
        "group": group,
        "records": records_total,
        "wall_s": wall,
        "records_per_s": records_total / wall,
        "cpu_s": cpu,
        "cpu_s_per_1m_records": cpu / records_total * 1e6,
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in rows),
        "tansu_cpu_s": tansu_cpu,
        "load_after": os.getloadavg()[0],
        "delta_commits": commits["commits"],
        "other_commits": commits["other"],
        "per_member": rows,
    }
    check_offsets(result, commits, partitions)
    result["check"] = check_delta_equals_postgres(cluster, delta_root / "public" / "orders")
    applied = sum(r["events"] for r in rows)
    if applied != records_total:
        log(f"WARNING: the members' 'batch written' lines add up to {applied:,} events, "
            f"the topic holds {records_total:,} records")
    log(f"{n} member(s): {wall:.2f} s, {records_total / wall:,.0f} records/s, CPU {cpu:.2f} s, applied "
        + ", ".join(f"{r['member']} {r['events']:,}" for r in rows))
    return result


BATCH = re.compile(r"batch written.*?events=(\d+)")
ASSIGN = re.compile(r"partitions (assigned|revoked).*?partitions=(\d+)")


def parse_member_log(path: Path, started_at, exited_at):
    """Events and batches written, the assignment history (seconds after this member's start;
    the revocation when it leaves the group at exit is marked "at exit"), when it was first
    given partitions and which members had exited by then, and the warnings and errors."""
    events = batches = 0
    history, problems, first_assigned = [], [], None
    text = ANSI.sub("", path.read_text(errors="replace"))
    lines = text.splitlines()
    for line in lines:
        if m := BATCH.search(line):
            events += int(m.group(1))
            batches += 1
        elif m := ASSIGN.search(line):
            at = log_time(line)
            after = None if at is None else at - started_at
            if m.group(1) == "assigned" and first_assigned is None:
                first_assigned = at
            history.append({"what": m.group(1), "partitions": int(m.group(2)), "after_s": after})
        if " WARN " in line or " ERROR " in line:
            problems.append(line.strip())
    if history and history[-1]["what"] == "revoked":
        history[-1]["at_exit"] = True
    shown = " ".join(f"{'+' if h['what'] == 'assigned' else '-'}{h['partitions']}"
                     + (" at exit" if h.get("at_exit") else
                        f" @{h['after_s']:.1f}s" if h["after_s"] is not None else "") for h in history)
    return {"events": events, "batches": batches, "assignments": shown or "none", "history": history,
            "rebalanced": any(h["what"] == "revoked" and not h.get("at_exit") for h in history),
            "first_assigned_s": None if first_assigned is None else first_assigned - started_at,
            "gone_before_first_assignment": sorted(name for name, at in exited_at.items()
                                                   if first_assigned is not None and at < first_assigned),
            "caught_up": "caught up with every assigned partition" in text,
            "warnings": problems}


def log_time(line):
    """The UTC timestamp that starts a pgdelta log line, as seconds since the epoch."""
    try:
        return datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def delta_commits(table: Path, partitions):
    """Per member: commits and Kafka records (next offsets minus the previous commit's, per
    partition) from the commitInfo of every _delta_log/*.json, in version order."""
    members, last, backwards, other = {}, {}, [], 0
    commits = 0
    for path in sorted((table / "_delta_log").glob("*.json")):
        for line in path.read_text().splitlines():
            info = json.loads(line).get("commitInfo")
            if info is None:
                continue
            member = info.get("pgdelta.member")
            offsets = info.get("pgdelta.kafkaOffsets") or {}
            if isinstance(offsets, str):
                offsets = json.loads(offsets)
            if member is None:
                other += 1
                continue
            commits += 1
            entry = members.setdefault(member, {"commits": 0, "kafka_records": 0})
            entry["commits"] += 1
            for topic, parts in offsets.items():
                for partition, nxt in parts.items():
                    key = (topic, int(partition))
                    before = last.get(key, 0)
                    if nxt < before:
                        backwards.append(f"{path.name}: {topic}-{partition} {before} -> {nxt}")
                    entry["kafka_records"] += nxt - before
                    last[key] = max(before, nxt)
    return {"members": members, "final": last, "backwards": backwards, "commits": commits, "other": other}


def check_offsets(result, commits, partitions):
    """Every record of every partition is in exactly one commit: the offsets never move back
    and end at each partition's end."""
    final = {p: commits["final"].get((TOPIC, p), 0) for p in partitions}
    problems = list(commits["backwards"])
    problems += [f"partition {p}: Delta holds next offset {final[p]}, the partition has {n} records"
                 for p, n in partitions.items() if final[p] != n]
    if problems:
        raise RuntimeError(f"{result['members']} member(s): Kafka offsets in the Delta log are wrong:\n"
                           + "\n".join(problems[:20]))


def check_delta_equals_postgres(cluster, table: Path):
    """The Delta table equals PostgreSQL row for row; returns the row count and sum(amount)."""
    from deltalake import DeltaTable

    dt = DeltaTable(str(table))
    columns = ["id", "customer_id", "amount", "status", "note"]
    try:
        data = dt.to_pyarrow_table(columns=columns)
    except Exception:  # deletion vectors: read through DataFusion
        from deltalake import QueryBuilder

        data = QueryBuilder().register("t", dt).execute(f"SELECT {', '.join(columns)} FROM t").read_all()
    text = lambda v: "" if v is None else str(v)
    delta = sorted((tuple(text(row[c]) for c in columns) for row in data.to_pylist()), key=lambda row: int(row[0]))
    out = subprocess.run(cluster.psql_cmd("bench", PG_ROWS), capture_output=True, text=True, check=True).stdout
    pg = [tuple(line.split("|")) for line in out.splitlines()]
    delta_sum = sum(Decimal(row[2]) for row in delta)
    pg_sum = sum(Decimal(row[2]) for row in pg)
    if delta != pg:
        d, p = set(delta), set(pg)
        raise RuntimeError(
            f"Delta table {table} differs from PostgreSQL: {len(delta):,} rows (sum(amount) {delta_sum}) "
            f"against {len(pg):,} ({pg_sum}); only in Delta {sorted(d - p)[:5]}, only in PostgreSQL "
            f"{sorted(p - d)[:5]}")
    return {"rows": len(pg), "sum_amount": str(pg_sum)}


# ---- output --------------------------------------------------------------------------------

def render(results):
    lines = [f"pgdelta Kafka-mode scale-out, size {results['size']}, {os.cpu_count()} CPUs, "
             f"{results['records']:,} Debezium records ({', '.join(f'{op} {n:,}' for op, n in results['ops'].items())}) in {len(results['partitions'])} partitions "
             f"({', '.join(f'{n:,}' for n in results['partitions'].values())})",
             "",
             "| members | records | wall s | records/s total | records applied per member | CPU s total | "
             "CPU s per 1M records | peak RSS MB max |",
             "|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in results["runs"]:
        per = " / ".join(f"{m['events']:,}" for m in r["per_member"])
        lines.append(f"| {r['members']} | {r['records']:,} | {r['wall_s']:.2f} | {r['records_per_s']:,.0f} | {per} | "
                     f"{r['cpu_s']:.2f} | {r['cpu_s_per_1m_records']:.1f} | {r['peak_rss_mb_max']:.0f} |")
    lines += ["", "Per member (partitions: +assigned/-revoked counts in order, @ seconds after the member's "
                  "start; commits and Kafka records from the Delta log's pgdelta.member and "
                  "pgdelta.kafkaOffsets; warnings: WARN/ERROR lines in its log):", "",
              "| member | wall s | CPU s | peak RSS MB | events applied | batches | commits | Kafka records | "
              "partitions | warnings |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in results["runs"]:
        for m in r["per_member"]:
            lines.append(f"| {m['member']} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | {m['peak_rss_mb']:.0f} | "
                         f"{m['events']:,} | {m['batches']} | {m['commits']} | {m['kafka_records']:,} | "
                         f"{m['assignments']} | {len(m['warnings'])} |")
    for r in results["runs"]:
        notes = []
        for m in r["per_member"]:
            late = m["gone_before_first_assignment"]
            if m["first_assigned_s"] is None:
                notes.append(f"{m['member']} was never assigned a partition")
            elif late:
                notes.append(f"{m['member']} got its first partitions {m['first_assigned_s']:.1f} s after its start, "
                             f"only after {', '.join(late)} had exited")
            if m["rebalanced"]:
                notes.append(f"{m['member']} had partitions revoked while it ran (a rebalance)")
            if m["events"] == 0 and m["first_assigned_s"] is not None:
                notes.append(f"{m['member']} applied nothing: its partitions were already in Delta")
        if notes:
            lines += ["", f"{r['members']} member(s): " + "; ".join(notes) + "."]
    lines += ["", "tansu CPU s per run (same two cores): "
              + ", ".join(f"{r['members']}: {r['tansu_cpu_s']:.2f}" for r in results["runs"])
              + "; Delta equals PostgreSQL after every run ("
              + f"{results['runs'][-1]['check']['rows']:,} rows, sum(amount) {results['runs'][-1]['check']['sum_amount']})."]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=SIZES, default="default")
    parser.add_argument("--work", required=True)
    parser.add_argument("--pgdelta", required=True)
    parser.add_argument("--tansu", default=os.environ.get("PGDELTA_TANSU",
                                                           str(Path.home() / ".cache/pgdelta/tansu/bin/tansu")))
    parser.add_argument("--members", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--changes", type=int, help="workload changes (rounded down to 1,000s)")
    parser.add_argument("--seed", type=int, help="rows in the table before the capture (snapshot records)")
    parser.add_argument("--batch-size", type=int, help="the pipeline's batch_size (default: pgdelta's)")
    parser.add_argument("--consumer", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more librdkafka consumer properties, e.g. heartbeat.interval.ms=500")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one run of N members may take")
    args = parser.parse_args()
    size = dict(SIZES[args.size])
    if args.changes:
        size["changes"] = args.changes
    if args.seed:
        size["seed"] = args.seed
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(work)
    tansu = Tansu(args.tansu, work)
    results = {"size": args.size, "cpus": os.cpu_count(), "seed": size["seed"], "changes": size["changes"],
               "runs": []}
    cluster.start()
    try:
        records, ops = capture(cluster, work, size)
        tansu.start()
        tansu.create_topic(TOPIC, args.partitions)
        partitions = tansu.produce(records)
        for p in range(args.partitions):
            partitions.setdefault(p, 0)
        results.update(records=len(records), ops=ops, partitions={p: partitions[p] for p in sorted(partitions)})
        del records
        for n in args.members:
            results["runs"].append(run_members(args, work, cluster, tansu, n, results["records"], partitions))
            (work / "results.json").write_text(json.dumps(results, indent=2))
    finally:
        tansu.stop()
        cluster.stop()
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(render(results))


if __name__ == "__main__":
    main()
