"""orjson against the standard library's json on the same builds.

Decoding: every input file of the book. Encoding: both published documents with the same
options the renderer uses (sorted keys, compact). Ratios are stdlib time / orjson time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.book import scaling_spec, write_book
from bench.scaling import settings_for
from bench.stats import ratio, summary
from bench.timing import repeat_ms
from kpi_publisher import pipeline
from kpi_publisher.sources import SourceReader


def _stdlib_dumps(doc: Any) -> bytes:
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def measure_size(n_symbols: int, work: Path, budget_s: float) -> dict[str, Any]:
    book = write_book(work / f"json-{n_symbols}", scaling_spec(n_symbols))
    raws = [(book.root / rel).read_bytes() for rel in book.files]
    settings = settings_for(book.state_dir, book.out_dir)
    outputs = pipeline.build(SourceReader(settings).read_all(), time.time(), settings)
    docs = (outputs.kpis, outputs.positions)
    if _stdlib_dumps(docs[0]) != orjson.dumps(docs[0], option=orjson.OPT_SORT_KEYS):
        # Not fatal for a timing, but worth knowing: the two libraries disagree on bytes.
        same_bytes = False
    else:
        same_bytes = True
    fns: dict[str, Callable[[], Any]] = {
        "decode_orjson": lambda: [orjson.loads(r) for r in raws],
        "decode_stdlib": lambda: [json.loads(r) for r in raws],
        "encode_orjson": lambda: [orjson.dumps(d, option=orjson.OPT_SORT_KEYS) for d in docs],
        "encode_stdlib": lambda: [_stdlib_dumps(d) for d in docs],
    }
    row: dict[str, Any] = {"n_symbols": n_symbols, "input_bytes": sum(map(len, raws))}
    for name, fn in fns.items():
        row[name + "_ms"] = summary(repeat_ms(fn, budget_s=budget_s / len(fns)))
    med = {k: row[k + "_ms"]["median"] for k in fns}
    row["decode_ratio"] = ratio(med["decode_stdlib"], med["decode_orjson"])
    row["encode_ratio"] = ratio(med["encode_stdlib"], med["encode_orjson"])
    row["same_bytes"] = same_bytes
    return row


def run(
    sizes: Sequence[int], work: Path, budget_s: float, *, progress: Callable[[str], None]
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        progress(f"json: {n} symbols")
        rows.append(measure_size(n, work, budget_s))
    return rows
