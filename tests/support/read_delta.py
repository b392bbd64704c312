#!/usr/bin/env python3
"""Independent Delta Lake reader used by the integration tests.

It reads tables with the PyPI `deltalake` package, so the tests check what
pgdelta wrote with an implementation other than the one that wrote it.

Usage:
    read_delta.py rows <table_path>
    read_delta.py cdf  <table_path> [starting_version]
    read_delta.py meta <table_path>
    read_delta.py replay <table_path>

`rows` reads through delta-rs (DataFusion's QueryBuilder when the table has deletion
vectors, which `to_pyarrow_table` refuses). `replay` is a second, independent reader: it
replays the JSON log itself, reads the Parquet files with pyarrow and drops the rows of
each deletion vector, decoded with pyroaring (CRoaring). Local tables only.

Every command prints one JSON document on stdout. Tables on an object store are opened
with the delta-rs storage options given as a JSON object in READ_DELTA_STORAGE_OPTIONS.
"""

import datetime
import decimal
import json
import os
import math
import sys

import pyarrow as pa
from deltalake import DeltaTable

CDF_HIDDEN_COLUMNS = ("_commit_timestamp",)
CDF_ORDER_COLUMNS = ("_commit_version", "_change_type")


def render(value):
    """Turn one pyarrow python value into something JSON can carry."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return render_float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (decimal.Decimal, datetime.date, datetime.time, datetime.timedelta)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): render(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render(v) for v in value]
    return str(value)


def render_float(value):
    """JSON has no NaN or infinities: spell them as strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def sort_key(values):
    return tuple(json.dumps(v, sort_keys=True) if not isinstance(v, str) else v for v in values)


def arrow_table(data):
    """Accept a pyarrow Table or anything with the Arrow C stream interface."""
    if isinstance(data, pa.Table):
        return data
    return pa.table(data)


def open_table(path):
    """The table at `path`; object-store options come as JSON in READ_DELTA_STORAGE_OPTIONS."""
    options = json.loads(os.environ.get("READ_DELTA_STORAGE_OPTIONS", "null"))
    return DeltaTable(path, storage_options=options) if options else DeltaTable(path)


def has_deletion_vectors(delta):
    return "deletionVectors" in (delta.protocol().reader_features or [])


def live_rows(delta):
    if has_deletion_vectors(delta):
        from deltalake import QueryBuilder

        return arrow_table(QueryBuilder().register("t", delta).execute("SELECT * FROM t").read_all())
    return arrow_table(delta.to_pyarrow_table())


def rows_of(table, columns):
    rows = [[render(row[c]) for c in columns] for row in table.select(columns).to_pylist()]
    rows.sort(key=sort_key)
    return rows


def cmd_rows(path):
    delta = open_table(path)
    columns = [f.name for f in delta.schema().fields]
    return {"columns": columns, "rows": rows_of(live_rows(delta), columns)}


DV_MAGIC = 1681511377


def z85_decode(text):
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
    out = bytearray()
    for i in range(0, len(text), 5):
        value = 0
        for ch in text[i:i + 5]:
            value = value * 85 + alphabet.index(ch)
        out += value.to_bytes(4, "big")
    return bytes(out)


def deleted_positions(root, dv):
    """The row positions a deletion vector descriptor removes, read with pyroaring."""
    import uuid
    import zlib
    from pyroaring import BitMap64

    size = dv["sizeInBytes"]
    if dv["storageType"] == "i":
        data = z85_decode(dv["pathOrInlineDv"])[:size]
    elif dv["storageType"] == "u":
        encoded = dv["pathOrInlineDv"]
        prefix, tail = encoded[:-20], encoded[-20:]
        name = f"deletion_vector_{uuid.UUID(bytes=z85_decode(tail))}.bin"
        with open(os.path.join(root, prefix, name), "rb") as f:
            f.seek(dv.get("offset", 1))
            chunk = f.read(4 + size + 4)
        if int.from_bytes(chunk[:4], "big") != size:
            raise ValueError(f"deletion vector {encoded}: size does not match the log")
        data = chunk[4:4 + size]
        if zlib.crc32(data) != int.from_bytes(chunk[4 + size:], "big"):
            raise ValueError(f"deletion vector {encoded}: checksum does not match")
    else:
        raise ValueError(f"deletion vector storage type {dv['storageType']} not read here")
    if int.from_bytes(data[:4], "little") != DV_MAGIC:
        raise ValueError("deletion vector: not the portable RoaringBitmapArray format")
    positions = BitMap64.deserialize(data[4:])
    if len(positions) != dv["cardinality"]:
        raise ValueError("deletion vector: cardinality does not match the log")
    return positions


def replayed_files(root):
    """path -> (add action) of the live files, from the JSON commits (no checkpoint)."""
    log = os.path.join(root, "_delta_log")
    live = {}
    for name in sorted(n for n in os.listdir(log) if n.endswith(".json")):
        with open(os.path.join(log, name)) as f:
            for line in f:
                action = json.loads(line)
                if "add" in action:
                    live[action["add"]["path"]] = action["add"]
                elif "remove" in action:
                    live.pop(action["remove"]["path"], None)
    return live


def cmd_replay(path):
    import urllib.parse

    import pyarrow.parquet as pq

    delta = open_table(path)
    columns = [f.name for f in delta.schema().fields]
    root = path
    parts, vectors, deleted = [], 0, 0
    for file_path, add in replayed_files(root).items():
        table = pq.read_table(os.path.join(root, urllib.parse.unquote(file_path)))
        dv = add.get("deletionVector")
        if dv:
            gone = deleted_positions(root, dv)
            vectors += 1
            deleted += len(gone)
            keep = [i for i in range(table.num_rows) if i not in gone]
            table = table.take(pa.array(keep, type=pa.int64()))
        partition_values = add.get("partitionValues") or {}
        for name in columns:
            if name in table.column_names:
                continue
            if name in partition_values:
                value = partition_values[name]
                table = table.append_column(name, pa.array([value] * table.num_rows, type=pa.string()))
            else:
                table = table.append_column(name, pa.nulls(table.num_rows))
        parts.append(table.select(columns))
    rows = []
    for part in parts:
        rows.extend(rows_of(part, columns))
    rows.sort(key=sort_key)
    return {"columns": columns, "rows": rows, "deletion_vectors": vectors, "deleted_rows": deleted}


def cmd_cdf(path, starting_version=0):
    reader = open_table(path).load_cdf(starting_version=starting_version)
    table = arrow_table(reader.read_all() if isinstance(reader, pa.RecordBatchReader) else reader)
    columns = [c for c in table.column_names if c not in CDF_HIDDEN_COLUMNS]
    order = list(CDF_ORDER_COLUMNS) + [c for c in columns if c not in CDF_ORDER_COLUMNS]
    rows = [{c: render(row[c]) for c in columns} for row in table.to_pylist()]
    rows.sort(key=lambda r: (r["_commit_version"], r["_change_type"], sort_key([r[c] for c in order[2:]])))
    return {"rows": rows}


def type_string(dtype):
    """Delta type name: primitives as-is, nested types spelled out recursively."""
    kind = getattr(dtype, "type", None)
    if kind == "array":
        return f"array<{type_string(dtype.element_type)}>"
    if kind == "map":
        return f"map<{type_string(dtype.key_type)},{type_string(dtype.value_type)}>"
    if kind == "struct":
        inner = ",".join(f"{f.name}:{type_string(f.type)}" for f in dtype.fields)
        return f"struct<{inner}>"
    return str(kind) if kind is not None else str(dtype)


def protocol_dict(protocol):
    return {
        "min_reader_version": protocol.min_reader_version,
        "min_writer_version": protocol.min_writer_version,
        "reader_features": sorted(protocol.reader_features or []),
        "writer_features": sorted(protocol.writer_features or []),
    }


def cmd_meta(path):
    table = open_table(path)
    metadata = table.metadata()
    return {
        "version": table.version(),
        "files": len(table.file_uris()),
        "schema": [[f.name, type_string(f.type)] for f in table.schema().fields],
        "partition_columns": list(metadata.partition_columns),
        "configuration": dict(metadata.configuration),
        "protocol": protocol_dict(table.protocol()),
    }


def usage():
    sys.stderr.write(__doc__)
    sys.exit(2)


def main(argv):
    if len(argv) < 3:
        usage()
    command, path = argv[1], argv[2]
    if command == "rows" and len(argv) == 3:
        result = cmd_rows(path)
    elif command == "cdf" and len(argv) in (3, 4):
        result = cmd_cdf(path, int(argv[3]) if len(argv) == 4 else 0)
    elif command == "meta" and len(argv) == 3:
        result = cmd_meta(path)
    elif command == "replay" and len(argv) == 3:
        result = cmd_replay(path)
    else:
        usage()
    json.dump(result, sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
    sys.stdout.flush()
    # deltalake's native runtime threads can abort the interpreter's normal shutdown
    # ("terminate called without an active exception"); the output is complete here.
    os._exit(0)
