"""A dashboard-like reader: parse and schema-check both published files in a tight loop.

Usage: python torn_reader.py OUT_DIR. Runs until SIGTERM, then prints one JSON line of counts:
reads (both files, per file), absent (FileNotFoundError), parse_failures (strict orjson),
schema_failures (jsonschema), versions (distinct generated_at values seen in kpis_v7.json)
and a few examples of failures.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from kpi_publisher import schemas

FILES = ("kpis_v7.json", "positions_v7.json")


def main(out_dir: Path) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    validators = {}
    for name in FILES:
        schema = schemas.load(name.removesuffix(".json"))
        validators[name] = jsonschema.validators.validator_for(schema)(schema)
    counts: dict[str, Any] = {
        "reads": 0,
        "absent": 0,
        "parse_failures": 0,
        "schema_failures": 0,
        "examples": [],
    }
    versions: set[float] = set()
    print("ready", flush=True)
    while not stop.is_set():
        for name in FILES:
            try:
                with open(out_dir / name, "rb") as fh:
                    raw = fh.read()
            except FileNotFoundError:
                counts["absent"] += 1
                continue
            counts["reads"] += 1
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                counts["parse_failures"] += 1
                if len(counts["examples"]) < 5:
                    counts["examples"].append(f"{name}: {exc} ({len(raw)} bytes)")
                continue
            try:
                validators[name].validate(doc)
            except jsonschema.ValidationError as exc:
                counts["schema_failures"] += 1
                if len(counts["examples"]) < 5:
                    counts["examples"].append(f"{name}: {exc.message}")
                continue
            if name == "kpis_v7.json":
                versions.add(doc["generated_at"])
    counts["versions"] = len(versions)
    print(orjson.dumps(counts).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
