#!/usr/bin/env python3
"""pgdelta benchmark orchestrator (run it through bench/run.sh, which builds and installs).

One throwaway PostgreSQL, then for every workload:
  1. create the table, a publication (table + bench_end) and one pgoutput slot per consumer,
     so every consumer reads exactly the same changes (slots are created before the workload);
  2. warm up the consumers that need a first contact (pgdelta creates its Delta table,
     Debezium stores its first offset) before any change is written;
  3. write the workload, then one bench_end row; the WAL between the two positions is what
     every consumer has to read;
  4. run the consumers one after the other, each alone on the machine, each under
     /usr/bin/time -v: pg_recvlogical (pgoutput to /dev/null, the physical limit),
     pgdelta-decode-bench (pgdelta's source stack, changes discarded), pgdelta end to end into
     Delta, pgdelta end to end into Delta on S3 (pgdelta_s3: a local s3s-fs server this script
     starts on a free loopback port), and Debezium (embedded engine, JSON records counted and
     discarded).
Then a latency run: pgdelta runs continuously while pgbench inserts at a fixed rate; again with
the Delta table on S3 unless pgdelta_s3 is skipped.
Results: a table on stdout and results.json in the work directory.
"""

import argparse
import json
import os
import shlex
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SIZES = {
    "quick": dict(insert=50_000, mixed_steps=50, wide=10_000, big=50_000, per_tx=1000,
                  latency_seconds=8, latency_rate=1000),
    "default": dict(insert=1_000_000, mixed_steps=300, wide=100_000, big=5_000_000, per_tx=1000,
                    latency_seconds=30, latency_rate=1000),
}
CONSUMERS = ["pg_recvlogical", "decode", "pgdelta", "pgdelta_s3", "debezium"]


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lsn_to_int(text):
    hi, lo = text.strip().split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


class Cluster:
    """A throwaway PostgreSQL tuned for benchmarking the consumers, not for durability."""

    def __init__(self, work: Path):
        self.work = work
        self.port = free_port()
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1]
        self.data = work / "pg"

    def as_postgres(self, *cmd):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return list(cmd)

    def start(self):
        if os.geteuid() == 0:
            subprocess.run(["chown", "postgres", str(self.work)], check=True)
        subprocess.run(self.as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                                        "--auth=trust", "--no-sync"), check=True, stdout=subprocess.DEVNULL)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.work}'
wal_level = logical
max_wal_senders = 20
max_replication_slots = 20
track_commit_timestamp = on
shared_buffers = 1GB
max_wal_size = 16GB
checkpoint_timeout = 30min
# Source side only: durability is not what is measured here.
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
""")
        subprocess.run(self.as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                                        str(self.work / "postgres.log"), "-w", "start"),
                       check=True, stdout=subprocess.DEVNULL)
        self.psql("postgres", "CREATE DATABASE bench")
        self.psql("bench", (HERE / "workloads.sql").read_text())
        self.psql("bench", "CREATE TABLE bench_end (id serial PRIMARY KEY, tag text)")

    def stop(self):
        subprocess.run(self.as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def psql_cmd(self, db, sql):
        return [str(self.bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql]

    def psql(self, db, sql):
        out = subprocess.run(self.psql_cmd(db, sql), capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {sql[:200]}\n{out.stderr}")
        return out.stdout.strip()

    def wal_lsn(self):
        return lsn_to_int(self.psql("bench", "SELECT pg_current_wal_lsn()"))

    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/bench"


class S3Server:
    """A local S3-protocol server (s3s-fs, as in tests/harness/s3.rs): objects are plain files
    under <data>/<bucket>/<key>, so Delta commit files can be stat'ed like local ones. Every
    request is logged (s3s's "resolved route" debug line) so requests can be counted per run."""

    ACCESS_KEY = "pgdelta-bench-key"
    SECRET_KEY = "pgdelta-bench-secret-0123456789"
    REGION = "us-east-1"
    BUCKET = "bench"
    PREFIX = "delta"

    def __init__(self, binary, work: Path):
        self.binary = binary
        self.data = work / "s3"
        self.log_file = work / "s3s-fs.log"
        self.port = free_port()
        self.proc = None

    def start(self):
        (self.data / self.BUCKET).mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", self.ACCESS_KEY,
             "--secret-key", self.SECRET_KEY, str(self.data)],
            stdin=subprocess.DEVNULL, stdout=open(self.log_file, "a"), stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": "warn,s3s::ops=debug"})
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"s3s-fs did not start on port {self.port}; see {self.log_file}")
                time.sleep(0.05)
        log(f"s3s-fs listening on 127.0.0.1:{self.port}, objects in {self.data}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_s(self):
        """CPU seconds the server has used so far (it shares the machine's cores with pgdelta)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def delta_root(self):
        return f"s3://{self.BUCKET}/{self.PREFIX}"

    def storage_toml(self):
        """The delta-rs storage options, as a [storage] table of the pgdelta config."""
        return f"""[storage]
aws_endpoint_url = "http://127.0.0.1:{self.port}"
aws_access_key_id = "{self.ACCESS_KEY}"
aws_secret_access_key = "{self.SECRET_KEY}"
aws_region = "{self.REGION}"
aws_allow_http = "true"
conditional_put = "etag"

"""

    def local_path(self, relative):
        """The directory under the data directory that holds s3://bucket/prefix/<relative>."""
        return self.data / self.BUCKET / self.PREFIX / relative

    def log_offset(self):
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def requests_since(self, offset):
        """Requests served since `offset` of the log, by S3 operation (PutObject, GetObject, ...);
        "<op> _delta_log" counts the ones on a key under a _delta_log/ (commits, checkpoints)."""
        with open(self.log_file, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
        counts = {}
        # s3s-fs logs with tracing's "pretty" format: the message, then its fields on one line.
        # Failed requests (a missing _last_checkpoint, a lost commit race) also count as
        # "error <code>".
        for m in re.finditer(r"resolved route, op: (\w+)(.*)|ERROR s3s::ops: error: S3Error \{ code: (\w+)", text):
            ops = [m.group(1)] if m.group(1) else [f"error {m.group(3)}"]
            if m.group(1) and "/_delta_log/" in (m.group(2) or ""):
                ops.append(f"{m.group(1)} _delta_log")
            for op in ops:
                counts[op] = counts.get(op, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def objects(self, relative):
        """(files, bytes) stored under s3://bucket/prefix/<relative>."""
        files = size = 0
        for path in self.local_path(relative).rglob("*"):
            if path.is_file():
                files += 1
                size += path.stat().st_size
        return files, size


class Measured:
    """Runs a command under /usr/bin/time -v, sampling the child's RSS every 0.2 s."""

    def __init__(self, name, cmd, work: Path, env=None, walsender=None):
        """`walsender`: (cluster, slot) to also sample the CPU time of the slot's walsender."""
        self.name, self.cmd, self.work, self.env = name, cmd, work, env
        self.walsender = walsender
        self.walsender_cpu_s = None
        self.time_file = work / f"{name}.time"
        self.out_file = work / f"{name}.out"
        self.err_file = work / f"{name}.err"
        self.rss_samples = []

    def start(self):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(["/usr/bin/time", "-v", "-o", str(self.time_file), *self.cmd],
                                     stdout=open(self.out_file, "w"), stderr=open(self.err_file, "w"),
                                     env=self.env)
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        return self

    def _child_pid(self):
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            return int(children[0]) if children else None
        except OSError:
            return None

    def child_pid(self):
        for _ in range(50):
            pid = self._child_pid()
            if pid:
                return pid
            time.sleep(0.02)
        return None

    def _sample_walsender(self, ws_pid):
        if ws_pid is None:
            cluster, slot = self.walsender
            try:
                found = cluster.psql("bench", f"SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{slot}'")
                ws_pid = int(found) if found else None
            except (RuntimeError, ValueError):
                return None
        if ws_pid is not None:
            try:
                fields = Path(f"/proc/{ws_pid}/stat").read_text().rsplit(")", 1)[1].split()
                self.walsender_cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                pass
        return ws_pid

    def _sample(self):
        pid = ws_pid = None
        while self.proc.poll() is None:
            if self.walsender:
                ws_pid = self._sample_walsender(ws_pid)
            pid = pid or self._child_pid()
            if pid:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
                    self.rss_samples.append((time.monotonic() - self.started, kb))
                except (OSError, AttributeError):
                    pass
            time.sleep(0.2)

    def wait(self, timeout=None):
        rc = self.proc.wait(timeout=timeout)
        self.wall = time.monotonic() - self.started
        self.sampler.join()
        if rc != 0:
            raise RuntimeError(f"{self.name} failed (exit {rc}); see {self.err_file}:\n"
                               + self.err_file.read_text()[-3000:])
        return self

    def run(self, timeout=None):
        return self.start().wait(timeout)

    def usage(self):
        text = self.time_file.read_text()
        field = lambda label: float(re.search(re.escape(label) + r":\s*([\d.]+)", text).group(1))
        return {
            "wall_s": self.wall,
            "cpu_s": field("User time (seconds)") + field("System time (seconds)"),
            "peak_rss_mb": field("Maximum resident set size (kbytes)") / 1024,
            "walsender_cpu_s": self.walsender_cpu_s,
        }

    def output(self):
        return self.out_file.read_text()


class UntilTag:
    """pg_recvlogical's output, read from a FIFO: counts the bytes and stops pg_recvlogical
    (SIGINT: it confirms what it received and exits cleanly) once the workload's end tag has
    gone past. Not `--endpos`: pg_recvlogical ends at the first keepalive past it, and the
    walsender sends those while it is still decoding a large transaction, so a run could end
    before a single change arrived (seen once with the 5M-row transaction: 9 s, no CPU)."""

    def __init__(self, path: Path, tag: str):
        self.path, self.tag = path, tag.encode()
        self.bytes, self.found = 0, False
        if path.exists():
            path.unlink()
        os.mkfifo(path)

    def watch(self, measured):
        self.thread = threading.Thread(target=self._read, args=(measured,), daemon=True)
        self.thread.start()

    def _read(self, measured):
        keep = len(self.tag) - 1
        tail = b""
        try:
            with open(self.path, "rb", buffering=0) as fifo:  # a read returns what is there
                while chunk := fifo.read(1 << 20):
                    self.bytes += len(chunk)
                    seen = tail + chunk
                    if not self.found and self.tag in seen:
                        self.found = True
                        self.stop(measured)
                    tail = seen[-keep:] if keep else b""
        finally:
            if not self.found:  # nobody reads any more: pg_recvlogical must not block on us
                self.stop(measured)

    @staticmethod
    def stop(measured):
        pid = measured.child_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def finish(self, check=True):
        if self.thread.is_alive():  # the writer never opened the FIFO: let the reader go
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        self.thread.join(timeout=10)
        self.path.unlink(missing_ok=True)
        if check and not self.found:
            raise RuntimeError(f"pg_recvlogical stopped after {self.bytes:,} bytes, before the end of "
                               "the workload: no limit to compare with; run the benchmark again")


class Bench:
    def __init__(self, args):
        self.args = args
        self.size = SIZES[args.size]
        self.work = Path(args.work)
        self.cluster = Cluster(self.work)
        self.s3 = S3Server(args.s3_server, self.work) if "pgdelta_s3" not in args.skip else None
        self.results = {"size": args.size, "workloads": {}, "latency": None, "latency_s3": None}

    # ---- set-up per workload -------------------------------------------------------------

    def config_for(self, name, table, slot, extra="", s3=False):
        """A pgdelta config with one pipeline `name`; with `s3`, its Delta root is on the S3 server."""
        path = self.work / f"{name}{'_s3' if s3 else ''}.toml"
        path.write_text(f"""[source]
url = "{self.cluster.url()}"
sslmode = "disable"

{self.s3.storage_toml() if s3 else ""}[pipelines.{name}]
tables = ["public.{table}"]
delta_root = "{self.s3.delta_root() if s3 else f'{self.work}/delta'}"
slot = "{slot}"
publication = "pub_{table}"
snapshot_mode = "never"
{extra}""")
        return path

    def debezium_spec(self, table, slot, end_tag, poke):
        offsets = self.work / f"dbz_{table}.offsets"
        spec = {
            "end_table": "bench_end",
            "end_tag": end_tag,
            "poke_sql": self.cluster.psql_cmd("bench", "INSERT INTO bench_end (tag) VALUES ('warmup')") if poke else None,
            "timeout_s": 1800,
            "properties": {
                "name": f"bench-{table}",
                "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
                "offset.storage.file.filename": str(offsets),
                "offset.flush.interval.ms": "1000",
                "database.hostname": "127.0.0.1",
                "database.port": str(self.cluster.port),
                "database.user": "postgres",
                "database.password": "postgres",
                "database.dbname": "bench",
                "topic.prefix": "bench",
                "plugin.name": "pgoutput",
                "slot.name": slot,
                "publication.name": f"pub_{table}",
                "publication.autocreate.mode": "disabled",
                "snapshot.mode": "no_data",
                "table.include.list": f"public.{table},public.bench_end",
                "tombstones.on.delete": "false",
                "key.converter.schemas.enable": "true",
                "value.converter.schemas.enable": "true",
            },
        }
        path = self.work / f"dbz_{table}_{'warmup' if poke else 'run'}.json"
        path.write_text(json.dumps(spec))
        return path

    def run_debezium(self, table, slot, end_tag, poke):
        spec = self.debezium_spec(table, slot, end_tag, poke)
        name = f"{table}-debezium{'-warmup' if poke else ''}"
        return Measured(name, [sys.executable, str(HERE / "debezium_count.py"), str(spec)], self.work,
                        walsender=None if poke else (self.cluster, slot)).run()

    # ---- one throughput workload ---------------------------------------------------------

    def workload(self, name):
        s = self.size
        table = {"insert": "ins", "mixed": "mixed", "wide": "wide", "big_tx": "bigtx"}[name]
        c = self.cluster
        c.psql("bench", f"CALL bench_create_{'wide' if name == 'wide' else 'narrow'}('{table}');"
                        f"CREATE PUBLICATION pub_{table} FOR TABLE {table}, bench_end")
        consumers = [x for x in CONSUMERS if x not in self.args.skip
                     and (x != "debezium" or name in self.args.debezium_on)]
        slots = {x: f"{table}_{x}" for x in consumers}
        create_slot = lambda slot: c.psql("bench", f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
        early = [x for x in consumers if x in ("pgdelta", "pgdelta_s3", "debezium")]  # these need a warm-up
        for consumer in early:
            create_slot(slots[consumer])
        stream_only = stream_only_toml(table)
        config = self.config_for(table, table, slots.get("pgdelta", f"{table}_pgdelta"), stream_only)
        configs = {"pgdelta": config}
        if "pgdelta_s3" in consumers:
            configs["pgdelta_s3"] = self.config_for(table, table, slots["pgdelta_s3"], stream_only, s3=True)
        for consumer in ("pgdelta", "pgdelta_s3"):  # creates the Delta table; nothing to stream yet
            if consumer in consumers:
                Measured(f"{table}-{consumer}-warmup", [self.args.pgdelta, "--config", str(configs[consumer]),
                                                        "pipeline", "start", table, "--exit-when-caught-up"],
                         self.work).run()
        if "debezium" in consumers:
            self.run_debezium(table, slots["debezium"], "warmup", poke=True)
        for consumer in consumers:  # after the warm-ups, so their bench_end rows are not seen
            if consumer not in early:
                create_slot(slots[consumer])

        if name == "insert":
            sql, rows = f"CALL bench_insert('{table}', {s['insert']}, {s['per_tx']}, false)", s["insert"]
        elif name == "wide":
            sql, rows = f"CALL bench_insert('{table}', {s['wide']}, {s['per_tx']}, true)", s["wide"]
        elif name == "big_tx":
            sql, rows = f"CALL bench_insert('{table}', {s['big']}, {s['big']}, false)", s["big"]
        else:
            steps = s["mixed_steps"]
            sql, rows = f"CALL bench_mixed('{table}', {steps})", steps * 700 + (steps - 1) * 300
        start_lsn = c.wal_lsn()
        t0 = time.monotonic()
        c.psql("bench", sql)
        generate_s = time.monotonic() - t0
        end_tag = f"{table}-end"
        c.psql("bench", f"INSERT INTO bench_end (tag) VALUES ('{end_tag}')")
        end_lsn = c.wal_lsn()
        wal_bytes = end_lsn - start_lsn
        log(f"{name}: {rows} changes, {wal_bytes / 1e6:.1f} MB of WAL, generated in {generate_s:.1f} s")
        result = {"table": table, "changes": rows, "wal_bytes": wal_bytes, "generate_s": generate_s,
                  "consumers": {}}

        for consumer in consumers:
            slot = slots[consumer]
            if consumer == "pg_recvlogical":
                received = UntilTag(self.work / f"{table}-recvlogical.fifo", end_tag)
                m = Measured(f"{table}-recvlogical", [
                    str(c.bin / "pg_recvlogical"), "-h", "127.0.0.1", "-p", str(c.port), "-U", "postgres",
                    "-d", "bench", "--slot", slot, "--start", "--no-loop",
                    "-o", "proto_version=1", "-o", f"publication_names=pub_{table}", "-o", "messages=true",
                    "-f", str(received.path)], self.work, walsender=(c, slot)).start()
                received.watch(m)
                try:
                    m.wait(timeout=3600)
                except BaseException:
                    received.stop(m)
                    received.finish(check=False)
                    raise
                received.finish()
                got = None
            elif consumer == "decode":
                m = Measured(f"{table}-decode", [self.args.decode_bench, "--config", str(config),
                                                 "--pipeline", table, "--slot", slot], self.work,
                             walsender=(c, slot)).run()
                got = result_line(m.output())["rows"] - 1  # minus bench_end
            elif consumer in ("pgdelta", "pgdelta_s3"):
                s3_offset = self.s3.log_offset() if consumer == "pgdelta_s3" else None
                s3_cpu = self.s3.cpu_s() if consumer == "pgdelta_s3" else None
                m = Measured(f"{table}-{consumer}", [*shlex.split(self.args.pgdelta_prefix), self.args.pgdelta,
                                                     "--config", str(configs[consumer]), "pipeline", "start",
                                                     table, "--exit-when-caught-up"], self.work,
                             walsender=(c, slot)).run()
                # before `pipeline status` reads the table
                s3_requests = self.s3.requests_since(s3_offset) if consumer == "pgdelta_s3" else None
                s3_cpu = self.s3.cpu_s() - s3_cpu if consumer == "pgdelta_s3" else None
                got = self.pgdelta_rows(configs[consumer], table)
            else:
                m = self.run_debezium(table, slot, end_tag, poke=False)
                detail = result_line(m.output())
                got = detail["rows"]
            usage = m.usage()
            usage["load_after"] = os.getloadavg()[0]
            usage["rows_per_s"] = rows / usage["wall_s"]
            usage["mb_per_s"] = wal_bytes / 1e6 / usage["wall_s"]
            usage["rss_samples_mb"] = summarize_rss(m.rss_samples)
            if consumer == "debezium":
                usage["streaming_s"] = detail["streaming_seconds"]
            if consumer == "pgdelta_s3":
                usage["s3_requests"] = s3_requests
                usage["s3_server_cpu_s"] = s3_cpu
                usage["s3_objects"], usage["s3_bytes"] = self.s3.objects(f"public/{table}")
            if consumer in ("pgdelta", "pgdelta_s3"):
                usage["delta_rows"] = got
                usage["batches"] = batch_timings(m.err_file)
            elif got is not None and got != rows:
                log(f"WARNING: {consumer} saw {got} changes on {table}, expected {rows}")
                usage["rows_seen"] = got
            result["consumers"][consumer] = usage
            log(f"  {consumer:15s} {usage['wall_s']:7.2f} s  {usage['rows_per_s']:>10,.0f} rows/s  "
                f"{usage['peak_rss_mb']:7.0f} MB  cpu {usage['cpu_s']:.2f} s")
            c.psql("bench", f"SELECT pg_drop_replication_slot('{slot}')")
        for consumer in ("pgdelta", "pgdelta_s3"):
            if consumer in result["consumers"]:
                expected = self.expected_final_rows(name)
                if result["consumers"][consumer]["delta_rows"] != expected:
                    log(f"WARNING: {consumer}'s Delta table {table} holds "
                        f"{result['consumers'][consumer]['delta_rows']} rows, PostgreSQL {expected}")
        c.psql("bench", f"DROP PUBLICATION pub_{table}; DROP TABLE {table}")
        self.results["workloads"][name] = result

    def expected_final_rows(self, name):
        s = self.size
        if name == "mixed":
            return s["mixed_steps"] * 700 - (s["mixed_steps"] - 1) * 100
        return {"insert": s["insert"], "wide": s["wide"], "big_tx": s["big"]}[name]

    def pgdelta_rows(self, config, pipeline):
        return delta_rows(self.args.pgdelta, config, pipeline)

    # ---- commit-to-visible latency -------------------------------------------------------

    def latency(self, s3=False):
        """Commit-to-visible latency; with `s3`, into a Delta table on the S3 server (its own
        table lat_s3, so both runs start from an empty table)."""
        s, c = self.size, self.cluster
        table = "lat_s3" if s3 else "lat"
        what = "latency on S3" if s3 else "latency"
        c.psql("bench", f"CREATE TABLE {table} (id bigserial PRIMARY KEY, payload text);"
                        f"CREATE PUBLICATION pub_{table} FOR TABLE {table}")
        config = self.config_for(table, table, f"{table}_pgdelta", s3=s3)
        s3_offset = self.s3.log_offset() if s3 else None
        s3_cpu = self.s3.cpu_s() if s3 else None
        m = Measured(f"{table}-pgdelta", [self.args.pgdelta, "--config", str(config), "pipeline", "start", table],
                     self.work).start()
        # On S3 the commit files are plain files in the server's data directory.
        delta = self.s3.local_path(f"public/{table}") if s3 else self.work / "delta" / "public" / table
        wait_until(lambda: (delta / "_delta_log").is_dir(), 60, f"pgdelta to create the {table} Delta table")
        time.sleep(1.0)  # replication stream up
        script = self.work / f"{table}.pgbench"
        script.write_text(f"INSERT INTO {table} (payload) VALUES (md5(random()::text));\n")
        rate, seconds = s["latency_rate"], s["latency_seconds"]
        log(f"{what}: pgbench inserting {rate} rows/s for {seconds} s while pgdelta runs")
        subprocess.run([str(c.bin / "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(c.port), "-U", "postgres",
                        "-c", "2", "-j", "1", "-R", str(rate), "-T", str(seconds), "-f", str(script), "bench"],
                       check=True, stdout=open(self.work / f"{table}-pgbench.out", "w"), stderr=subprocess.STDOUT)
        total = int(c.psql("bench", f"SELECT count(*) FROM {table}"))
        wait_until(lambda: self.pgdelta_rows(config, table) == total, 120, f"pgdelta to hold every {table} row")
        pid = m.child_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
        m.wait(timeout=60)
        # (includes the `pipeline status` polls above, a few requests each)
        s3_requests = self.s3.requests_since(s3_offset) if s3 else None
        s3_cpu = self.s3.cpu_s() - s3_cpu if s3 else None
        commits = {}
        out = c.psql("bench", f"SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM {table}")
        for line in out.splitlines():
            ident, ts = line.split("|")
            commits[int(ident)] = float(ts)
        latencies = visible_latencies(delta, commits)
        usage = m.usage()
        key = "latency_s3" if s3 else "latency"
        self.results[key] = {
            "rows": total,
            "rate": rate,
            "seconds": seconds,
            "p50_s": percentile(latencies, 50),
            "p99_s": percentile(latencies, 99),
            "max_s": max(latencies),
            "peak_rss_mb": usage["peak_rss_mb"],
            "cpu_s": usage["cpu_s"],
            "rss_samples_mb": summarize_rss(m.rss_samples),
            "batches": batch_timings(m.err_file),
        }
        if s3:
            self.results[key]["s3_requests"] = s3_requests
            self.results[key]["s3_server_cpu_s"] = s3_cpu
        log(f"{what}: p50 {self.results[key]['p50_s']:.3f} s, p99 {self.results[key]['p99_s']:.3f} s")

    # ---- driver ----------------------------------------------------------------------------

    def run(self):
        self.cluster.start()
        try:
            if self.s3:
                self.s3.start()
            for name in self.args.workloads:
                self.workload(name)
            if not self.args.no_latency:
                self.latency()
                if self.s3:
                    self.latency(s3=True)
        finally:
            if self.s3:
                self.s3.stop()
            self.cluster.stop()
        (self.work / "results.json").write_text(json.dumps(self.results, indent=2))
        print(render(self.results))


def delta_rows(pgdelta, config, pipeline):
    """The rows of the pipeline's first Delta table, as `pipeline status` counts them."""
    out = subprocess.run([pgdelta, "--config", str(config), "pipeline", "status", pipeline, "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)[0]["rows"]


def catch_up(pgdelta, config, pipeline, name, work, log_filter):
    """`pipeline start --exit-when-caught-up`, measured; only malloc settings of the environment
    pass through, so every run allocates alike."""
    env = {"PGDELTA_LOG": log_filter, "PATH": "/usr/bin:/bin",
           **{k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "MIMALLOC_"))}}
    return Measured(name, [pgdelta, "--config", str(config), "pipeline", "start", pipeline,
                           "--exit-when-caught-up"], work, env=env)


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (subprocess.CalledProcessError, json.JSONDecodeError, KeyError, TypeError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def visible_latencies(delta: Path, commits):
    """Row latency = creation time of the Delta log entry that first holds the row (a Delta
    commit is visible once its _delta_log/N.json exists) minus the row's PostgreSQL commit time
    (track_commit_timestamp). Rows are mapped to versions through the change data feed."""
    from deltalake import DeltaTable

    cdf = DeltaTable(str(delta)).load_cdf(starting_version=0)
    table = cdf.read_all() if hasattr(cdf, "read_all") else cdf
    ids = table.column("id").to_pylist()
    versions = table.column("_commit_version").to_pylist()
    visible_at = {}
    latencies = []
    for ident, version in zip(ids, versions):
        if version not in visible_at:
            visible_at[version] = (delta / "_delta_log" / f"{version:020d}.json").stat().st_mtime_ns / 1e9
        latencies.append(visible_at[version] - commits[ident])
    return latencies


def result_line(output):
    """The last JSON result line of a helper (Debezium's logging shares its stdout)."""
    return json.loads([line for line in output.splitlines() if line.startswith('{') and '"rows"' in line][-1])


def batch_timings(log_file: Path):
    """Per "batch written" log line of pgdelta: (events, seconds spent writing to Delta)."""
    pattern = re.compile(r"batch written.*?events=(\d+) elapsed=([\d.]+)(ns|µs|us|ms|s)\b")
    scale = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    batches = [(int(m.group(1)), float(m.group(2)) * scale[m.group(3)])
               for m in map(pattern.search, log_file.read_text().splitlines()) if m]
    if not batches:
        return None
    n = len(batches)
    return {"count": n, "write_s_total": sum(b[1] for b in batches),
            "first_write_s": batches[0][1], "middle_write_s": batches[n // 2][1],
            "last_write_s": batches[-1][1], "max_write_s": max(b[1] for b in batches),
            "events_per_batch": sum(b[0] for b in batches) / n}


def percentile(values, p):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def summarize_rss(samples):
    if not samples:
        return None
    kbs = [kb for _, kb in samples]
    n = len(kbs)
    return {"samples": n, "first_mb": kbs[0] / 1024, "mid_mb": kbs[n // 2] / 1024,
            "last_mb": kbs[-1] / 1024, "max_mb": max(kbs) / 1024}


def render(results):
    lines = [f"pgdelta benchmark, size {results['size']}, {os.cpu_count()} CPUs, "
             f"1-min load average after each run: "
             + ", ".join(f"{u['load_after']:.1f}" for w in results["workloads"].values() for u in w["consumers"].values()),
             "",
             "| workload | changes | WAL MB | consumer | wall s | rows/s | MB/s | peak RSS MB | CPU s | walsender CPU s | vs limit | vs Debezium |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, w in results["workloads"].items():
        cons = w["consumers"]
        limit = cons.get("pg_recvlogical", {}).get("rows_per_s")
        dbz = cons.get("debezium", {}).get("rows_per_s")
        for consumer, u in cons.items():
            vs_limit = f"{u['rows_per_s'] / limit:.2f}" if limit else "-"
            vs_dbz = f"{u['rows_per_s'] / dbz:.1f}x" if dbz and consumer in ("pgdelta", "pgdelta_s3", "decode") else "-"
            lines.append(f"| {name} | {w['changes']:,} | {w['wal_bytes'] / 1e6:.1f} | {consumer} | {u['wall_s']:.2f} | "
                         f"{u['rows_per_s']:,.0f} | {u['mb_per_s']:.1f} | {u['peak_rss_mb']:.0f} | {u['cpu_s']:.2f} | "
                         f"{'-' if u.get('walsender_cpu_s') is None else format(u['walsender_cpu_s'], '.2f')} | "
                         f"{vs_limit} | {vs_dbz} |")
    s3_rows = [(name, w["consumers"].get("pgdelta"), w["consumers"]["pgdelta_s3"])
               for name, w in results["workloads"].items() if "pgdelta_s3" in w["consumers"]]
    if s3_rows:
        lines += ["", "Delta on S3 (local s3s-fs) against Delta on local disk, same WAL, same run:", "",
                  "| workload | local rows/s | S3 rows/s | vs local | local wall s | S3 wall s | S3 CPU s | "
                  "server CPU s | S3 batches | S3 write s/batch | PUT (log) | GET (log) | LIST | other | objects | object MB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        main_ops = ("PutObject", "GetObject", "ListObjectsV2", "ListObjects")
        for name, local, u in s3_rows:
            req, b = u.get("s3_requests") or {}, u.get("batches")
            ratio = f"{u['rows_per_s'] / local['rows_per_s']:.2f}" if local else "-"
            lines.append(
                f"| {name} | {format(local['rows_per_s'], ',.0f') if local else '-'} | "
                f"{u['rows_per_s']:,.0f} | {ratio} | {format(local['wall_s'], '.2f') if local else '-'} | "
                f"{u['wall_s']:.2f} | {u['cpu_s']:.2f} | {u['s3_server_cpu_s']:.2f} | {b['count'] if b else '-'} | "
                f"{format(b['write_s_total'] / b['count'], '.3f') if b else '-'} | "
                f"{req.get('PutObject', 0)} ({req.get('PutObject _delta_log', 0)}) | "
                f"{req.get('GetObject', 0)} ({req.get('GetObject _delta_log', 0)}) | "
                f"{req.get('ListObjectsV2', 0) + req.get('ListObjects', 0)} | "
                f"{sum(n for op, n in req.items() if ' ' not in op and op not in main_ops)} | "
                f"{u['s3_objects']} | {u['s3_bytes'] / 1e6:.1f} |")
    for key, where in (("latency", "local disk"), ("latency_s3", "S3")):
        lat = results.get(key)
        if lat:
            lines += ["", f"commit-to-visible latency ({where}) at {lat['rate']} rows/s for {lat['seconds']} s "
                          f"({lat['rows']} rows): p50 {lat['p50_s']:.3f} s, p99 {lat['p99_s']:.3f} s, "
                          f"max {lat['max_s']:.3f} s; pgdelta peak RSS {lat['peak_rss_mb']:.0f} MB, "
                          f"CPU {lat['cpu_s']:.2f} s"
                          + (f"; s3s-fs CPU {lat['s3_server_cpu_s']:.2f} s; S3 requests "
                             f"{format_requests(lat['s3_requests'])}" if lat.get("s3_requests") else "")]
    return "\n".join(lines)


def stream_only_toml(pipeline):
    """The throughput rows measure the stream alone, as they do for the other consumers: whether
    compaction is due when a caught-up run ends depends on where its batch boundaries fell
    (wide, 100k rows: 1.5 s without it, 2.4 s with it), which made a row bimodal.
    bench/maintenance.sh measures compaction beside a stream."""
    return f"\n[pipelines.{pipeline}.maintenance]\nenabled = false\n"


def format_requests(counts):
    return ", ".join(f"{op} {n}" for op, n in counts.items())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=SIZES, default="default")
    parser.add_argument("--work", required=True)
    parser.add_argument("--pgdelta", required=True)
    parser.add_argument("--decode-bench", required=True)
    parser.add_argument("--workloads", nargs="+", default=["insert", "mixed", "wide", "big_tx"],
                        choices=["insert", "mixed", "wide", "big_tx"])
    parser.add_argument("--skip", nargs="*", action="extend", default=[], choices=CONSUMERS,
                        help="consumers to leave out (pgdelta_s3 also leaves out the latency run on S3)")
    parser.add_argument("--s3-server", default=None,
                        help="the s3s-fs binary for pgdelta_s3 and the latency run on S3; without it they are skipped")
    parser.add_argument("--debezium-on", nargs="*", default=None,
                        help="workloads Debezium runs on; default insert, mixed and wide (insert only with "
                             "--size quick). big_tx is left out by default: at Debezium's rate 5M rows "
                             "alone would take longer than the whole benchmark")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--pgdelta-prefix", default="",
                        help="command prefix for the measured pgdelta runs, e.g. 'perf record -e cpu-clock -o F'")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=N",
                        help="override a size parameter, e.g. insert=200000")
    args = parser.parse_args()
    if args.debezium_on is None:
        args.debezium_on = ["insert"] if args.size == "quick" else ["insert", "mixed", "wide"]
    if args.s3_server is None and "pgdelta_s3" not in args.skip:
        log("no --s3-server: skipping the S3 rows (pgdelta_s3 and the latency run on S3)")
        args.skip.append("pgdelta_s3")
    for item in args.override:
        key, value = item.split("=")
        SIZES[args.size][key] = int(value)
    Bench(args).run()


if __name__ == "__main__":
    main()
