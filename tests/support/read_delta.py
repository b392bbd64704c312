#!/usr/bin/env python3
"""Independent Delta Lake reader used by the integration tests.

It reads tables with the PyPI `deltalake` package, so the tests check what
pgdelta wrote with an implementation other than the one that wrote it.

Usage:
    read_delta.py rows <table_path>
    read_delta.py cdf  <table_path> [starting_version]
    read_delta.py meta <table_path>

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


def cmd_rows(path):
    delta = open_table(path)
    table = arrow_table(delta.to_pyarrow_table())
    table = table.select([f.name for f in delta.schema().fields])
    columns = table.column_names
    rows = [[render(row[c]) for c in columns] for row in table.to_pylist()]
    rows.sort(key=sort_key)
    return {"columns": columns, "rows": rows}


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
