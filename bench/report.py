"""The report: targets evaluated from the results, then docs/BENCHMARKS.md, the plot, the JSON.

`evaluate(results)` is pure: one row per target of the issue with the measured value, the
limit and met / missed / not measured. `write(results, out_dir)` renders the Markdown, one
PNG (latency distributions, scaling, burst lag) and the machine-readable JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.facts import facts, render
from bench.notes import GENERAL, NOTES

MD_NAME = "BENCHMARKS.md"
PNG_NAME = "benchmarks.png"
JSON_NAME = "benchmarks.json"

SECTIONS = (
    "## Machine and load",
    "## Targets",
    "## 1. End to end",
    "## 2. Against the floor",
    "## 3. Against polling",
    "## 4. Pipeline cost against book size",
    "## 5. Burst",
    "## 6. Idle cost and memory",
    "## 7. orjson against stdlib json",
    "## 8. Dashboard",
    "## Profile of one realistic build",
    "## Findings and changes",
    "## Method",
)
TARGET_IDS = (
    "e2e_p50",
    "e2e_p99",
    "floor_ratio",
    "large_p99",
    "burst_lag",
    "idle_cpu",
    "rss",
    "build_10k",
    "dashboard",
)


# -- helpers -----------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return None if math.isnan(x) else float(x)


def ms(x: Any) -> str:
    """Milliseconds for a table: 3 significant-ish digits; a dash when missing."""
    v = _num(x)
    if v is None:
        return "–"
    if v < 1:
        return f"{v:.3f}"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def times(x: Any) -> str:
    v = _num(x)
    if v is None:
        return "–"
    return f"{v:,.0f}×" if v >= 100 else f"{v:.2f}×"


def trio(s: Mapping[str, Any] | None) -> str:
    """'min / median / p99' of a summary, in ms."""
    if not s or not s.get("n"):
        return "–"
    return f"{ms(s.get('min'))} / {ms(s.get('median'))} / {ms(s.get('p99'))}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def case(results: Mapping[str, Any], book: str, fsync: bool) -> Mapping[str, Any]:
    """The e2e case of one book and fsync setting, or {} when the run has none."""
    for c in results.get("e2e") or ():
        if isinstance(c, Mapping) and c.get("book") == book and c.get("fsync") is fsync:
            return c
    return {}


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


# -- targets -----------------------------------------------------------------------------------


def _row(
    tid: str, target: str, value: float | None, limit: float, unit: str, *,
    strict: bool = False, detail: str = "", missing: str = "not measured",
) -> dict[str, Any]:  # fmt: skip
    if value is None:
        met = None
        measured = missing
    else:
        met = value < limit if strict else value <= limit
        shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        measured = (f"{shown} {unit}" if unit != "×" else f"{value:.2f}×") + (
            f" ({detail})" if detail else ""
        )
    return {"id": tid, "target": target, "value": value, "limit": limit, "unit": unit,
            "measured": measured, "met": met}  # fmt: skip


def evaluate(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per target of the issue; `met` is True, False, or None (not measured)."""
    real = case(results, "realistic", True)
    large = case(results, "large", True)
    burst = results.get("burst") or {}
    idle = results.get("idle") or {}
    bound = _num(burst.get("coalescing_bound_ms"))
    rss_values = [
        _num(idle.get("peak_rss_mb")),
        _num(burst.get("daemon_peak_rss_mb")),
        *(_num(c.get("daemon_peak_rss_mb")) for c in results.get("e2e") or ()),
    ]
    rss = [v for v in rss_values if v is not None]
    sizes = _get(results, "scaling", "sizes") or []
    build_10k = next(
        (_num(_get(s, "build_render_ms", "median")) for s in sizes if s.get("n_symbols") == 10_000),
        None,
    )
    dash = results.get("dashboard") or {}
    return [
        _row("e2e_p50", "Realistic book, end to end p50 with fsync ≤ 2 ms",
             _num(_get(real, "ours", "median")), 2.0, "ms"),
        _row("e2e_p99", "Realistic book, end to end p99 with fsync ≤ 5 ms",
             _num(_get(real, "ours", "p99")), 5.0, "ms"),
        _row("floor_ratio", "Realistic book, median ≤ 1.5× the floor's median (fsync on; "
             "floor = raw inotify + copy)", _num(real.get("ratio_to_floor_inotify")), 1.5, "×",
             detail=f"{times(real.get('ratio_to_floor_watchdog'))} of the watchdog floor"),
        _row("large_p99", "Large book, end to end p99 ≤ 50 ms (fsync on)",
             _num(_get(large, "ours", "p99")), 50.0, "ms"),
        _row("burst_lag", "Burst: max lag ≤ coalescing bound + 10 ms",
             _num(burst.get("max_lag_ms")), (bound or 0.0) + 10.0, "ms",
             detail=f"bound {ms(bound)} ms + 10 ms"),
        _row("idle_cpu", "Idle CPU < 0.2 % of one core", _num(idle.get("cpu_pct_of_core")),
             0.2, "%", strict=True, detail=f"{_num(idle.get('cpu_s')) or 0:.2f} CPU s in "
             f"{_num(idle.get('window_s')) or 0:.0f} s"),
        _row("rss", "Peak RSS < 60 MB (worst daemon of the run)", max(rss) if rss else None,
             60.0, "MB", strict=True),
        _row("build_10k", "10,000-symbol build < 50 ms (build + render, median)", build_10k,
             50.0, "ms", strict=True, missing="not part of this run"),
        _row("dashboard", "Dashboard: a change visible in the browser within 1.5 s (max)",
             _num(_get(dash, "input_to_visible_ms", "max")), 1500.0, "ms",
             detail=f"p50 {ms(_get(dash, 'input_to_visible_ms', 'median'))} ms",
             missing=f"skipped: {dash.get('skipped', 'not measured')}"),
    ]  # fmt: skip


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


# -- markdown -----------------------------------------------------------------------------------


def _machine(results: Mapping[str, Any]) -> list[str]:
    m = results.get("machine") or {}
    ls, le = results.get("load_start") or {}, results.get("load_end") or {}

    def load(x: Mapping[str, Any]) -> str:
        avg = x.get("loadavg") or []
        psi = x.get("cpu_pressure_some_avg10_pct")
        io = x.get("io_pressure_some_avg10_pct")
        text = " / ".join(f"{v:.2f}" for v in avg) if avg else "–"
        text += "" if psi is None else f" (CPU pressure {psi:.1f} %"
        text += "" if io is None else f", I/O pressure {io:.1f} %"
        return text + ("" if psi is None else ")")

    rows = [
        ("CPU", f"{m.get('cpu')} × {m.get('cores')} ({m.get('environment')})"),
        ("memory", f"{_num(m.get('memory_gb')) or 0:.1f} GB"),
        ("kernel / filesystem", f"{m.get('kernel')} / {m.get('filesystem')}"),
        ("Python / orjson / watchdog", f"{m.get('python')} / {m.get('orjson')} / "
         f"{m.get('watchdog')}"),
        ("load avg 1/5/15 min at start", load(ls)),
        ("load avg 1/5/15 min at end", load(le)),
        ("1-min load avg and pressure at each step (min – max)",
         _trace(results.get("load_trace") or [])),
        ("run", f"{results.get('started_at')} → {results.get('finished_at')}, "
         f"{_num(results.get('duration_s')) or 0:.0f} s, plan `{_get(results, 'plan', 'name')}`"),
    ]  # fmt: skip
    s = results.get("settings") or {}
    rows.append(
        ("daemon settings", f"debounce {s.get('debounce_ms')} ms, heartbeat "
         f"{s.get('heartbeat_s')} s, rescan {s.get('rescan_s')} s (production defaults)")
    )  # fmt: skip
    return table(("", ""), rows)


def _trace(trace: Sequence[Mapping[str, Any]]) -> str:
    ones = [t["loadavg"][0] for t in trace if t.get("loadavg")]

    def span(key: str) -> list[float]:
        return [t[key] for t in trace if _num(t.get(key)) is not None]

    psi, io = span("cpu_pressure_some_avg10_pct"), span("io_pressure_some_avg10_pct")
    if not ones:
        return "–"
    text = f"{min(ones):.2f} – {max(ones):.2f} over {len(ones)} steps"
    text += f"; CPU pressure {min(psi):.1f} – {max(psi):.1f} %" if psi else ""
    return text + (f"; I/O pressure {min(io):.1f} – {max(io):.1f} %" if io else "")


def _targets(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return table(
        ("target", "measured", "verdict"),
        ((r["target"], r["measured"], verdict(r["met"])) for r in rows),
    )


def _e2e(results: Mapping[str, Any]) -> list[str]:
    rows = []
    for c in results.get("e2e") or ():
        rows.append(
            (
                f"{c['book']} ({c['changed_file_bytes'] / 1024:,.0f} KB file, "
                f"{c['state_bytes'] / 1024:,.0f} KB state)",
                "on" if c["fsync"] else "off",
                trio(c.get("ours")),
                ms(_get(c, "ours", "max")),
                trio(c.get("replace_ms")),
                trio(c.get("daemon_pass_ms")),
                f"{_get(c, 'ours', 'n')} ({_get(c, 'ours', 'misses')} missed)",
            )
        )
    return table(
        ("book", "fsync", "rename → visible, min / p50 / p99 ms", "max ms",
         "the writer's os.replace ms", "daemon pass (its log) ms", "samples"),
        rows,
    )  # fmt: skip


def _floor(results: Mapping[str, Any]) -> list[str]:
    rows = []
    for c in results.get("e2e") or ():
        rows.append(
            (
                c["book"],
                "on" if c["fsync"] else "off",
                ms(_get(c, "ours", "median")),
                trio(c.get("floor_inotify")),
                trio(c.get("floor_watchdog")),
                times(c.get("ratio_to_floor_inotify")),
                times(c.get("ratio_to_floor_watchdog")),
            )
        )
    return table(
        ("book", "fsync", "ours p50 ms", "floor: raw inotify + copy, min / p50 / p99 ms",
         "floor: watchdog + copy, min / p50 / p99 ms", "ours ÷ inotify floor (p50)",
         "ours ÷ watchdog floor (p50)"),
        rows,
    )  # fmt: skip


def _polling(results: Mapping[str, Any]) -> list[str]:
    p = results.get("polling") or {}
    ours = _get(case(results, "realistic", True), "ours", "median")
    ratio = (p.get("median") / ours) if _num(p.get("median")) and _num(ours) else None
    rows = [
        ("polling every " + f"{p.get('interval_s')} s", trio(p), f"{p.get('n')}",
         f"{_num(p.get('cpu_pct_of_core')) or 0:.2f} %"),
        ("hedge-kpi run (inotify)", trio(_get(case(results, "realistic", True), "ours")),
         f"{_get(case(results, 'realistic', True), 'ours', 'n')}",
         f"{_num(_get(results, 'idle', 'cpu_pct_of_core')) or 0:.3f} % (idle)"),
    ]  # fmt: skip
    out = table(("publisher (realistic book, fsync on)", "min / p50 / p99 ms", "samples",
                 "CPU, % of one core"), rows)  # fmt: skip
    out += [
        "",
        f"Ratio of medians, polling ÷ daemon: **{times(ratio)}** at a {p.get('interval_s')} s "
        "interval. The real "
        "system's sync loop ran every 20 s, so there the expected wait was about 10 s "
        f"(≈ {times(10_000.0 / ours if _num(ours) else None)} the daemon's median).",
    ]
    return out


def _scaling(results: Mapping[str, Any]) -> list[str]:
    sc = results.get("scaling") or {}
    rows = [
        (
            f"{s['n_symbols']:,}",
            f"{s['n_positions']:,}",
            f"{s['state_bytes'] / 1024:,.0f} KB",
            trio(s.get("read_decode_ms")),
            trio(s.get("build_render_ms")),
            trio(s.get("render_ms")),
            f"{s['build_render_us_per_symbol']:.1f}",
        )
        for s in sc.get("sizes") or ()
    ]
    out = table(
        ("symbols", "positions", "state", "read + decode all inputs, min / p50 / p99 ms",
         "build + render, min / p50 / p99 ms", "of which render ms", "µs per symbol (p50)"),
        rows,
    )  # fmt: skip
    slopes = [
        f"{s['from']:,} → {s['to']:,}: {s['build_render']:.2f}" if s.get("build_render") else ""
        for s in sc.get("slopes") or ()
    ]
    out += ["", "Growth exponent of build + render between sizes (log-log slope, 1.00 = linear): "
            + "; ".join(x for x in slopes if x) + "."]  # fmt: skip
    return out


def _burst(results: Mapping[str, Any]) -> list[str]:
    b = results.get("burst") or {}
    rows = [
        ("writes (asked rate → achieved)", f"{b.get('writes')} in {b.get('duration_s')} s "
         f"({_num(b.get('rate_hz')) or 0:,.0f}/s → {_num(b.get('achieved_rate_hz')) or 0:,.0f}/s)"),
        ("publishes of kpis_v7.json", f"{b.get('publishes')}"),
        ("last write published", "yes" if b.get("last_write_published") else "**no**"),
        ("lag of the output behind each write, min / p50 / p99 ms", trio(b.get("lag_ms"))),
        ("maximum lag", f"{ms(b.get('max_lag_ms'))} ms (bound {ms(b.get('coalescing_bound_ms'))}"
         " ms + 10 ms)"),
        ("daemon CPU", f"{_num(b.get('daemon_cpu_s')) or 0:.2f} s in "
         f"{_num(b.get('window_s')) or 0:.1f} s = {_num(b.get('daemon_cpu_pct_of_core')) or 0:.1f}"
         " % of one core"),
    ]  # fmt: skip
    return table(("", ""), rows)


def _idle(results: Mapping[str, Any]) -> list[str]:
    i = results.get("idle") or {}
    rows = [
        ("window", f"{_num(i.get('window_s')) or 0:.1f} s, no input change, heartbeat every "
         f"{i.get('heartbeat_s')} s"),
        ("CPU", f"{_num(i.get('cpu_s')) or 0:.3f} s = {_num(i.get('cpu_pct_of_core')) or 0:.3f} "
         "% of one core"),
        ("peak RSS (VmHWM) / RSS at the end", f"{_num(i.get('peak_rss_mb')) or 0:.1f} MB / "
         f"{_num(i.get('rss_mb')) or 0:.1f} MB"),
    ]  # fmt: skip
    for c in results.get("e2e") or ():
        rows.append(
            (f"peak RSS after the {c['book']} e2e run (fsync {'on' if c['fsync'] else 'off'})",
             f"{_num(c.get('daemon_peak_rss_mb')) or 0:.1f} MB")
        )  # fmt: skip
    b = results.get("burst") or {}
    rows.append(("peak RSS after the burst", f"{_num(b.get('daemon_peak_rss_mb')) or 0:.1f} MB"))
    return table(("", ""), rows)


def _json(results: Mapping[str, Any]) -> list[str]:
    rows = [
        (
            f"{r['n_symbols']:,}",
            f"{r['input_bytes'] / 1024:,.0f} KB",
            ms(_get(r, "decode_orjson_ms", "median")),
            ms(_get(r, "decode_stdlib_ms", "median")),
            times(r.get("decode_ratio")),
            ms(_get(r, "encode_orjson_ms", "median")),
            ms(_get(r, "encode_stdlib_ms", "median")),
            times(r.get("encode_ratio")),
            "yes" if r.get("same_bytes") else "no",
        )
        for r in results.get("json") or ()
    ]
    return table(
        ("symbols", "inputs", "decode orjson ms", "decode json ms", "json ÷ orjson",
         "encode orjson ms", "encode json ms", "json ÷ orjson", "same kpis bytes"),
        rows,
    )  # fmt: skip


def _dashboard(results: Mapping[str, Any]) -> list[str]:
    d = results.get("dashboard") or {}
    if "skipped" in d:
        return [f"Skipped: {d['skipped']}."]
    out = table(
        ("dashboard refresh (run_every)", "input rename → visible, min / p50 / p99 / max ms",
         "publish → visible, min / p50 / p99 ms", "samples"),
        [(f"{d.get('refresh_s')} s",
          f"{trio(d.get('input_to_visible_ms'))} / {ms(_get(d, 'input_to_visible_ms', 'max'))}",
          trio(d.get("publish_to_visible_ms")),
          f"{_get(d, 'input_to_visible_ms', 'n')} ({d.get('misses')} missed)")],
    )  # fmt: skip
    warmup = ", ".join(f"{ms(x)} ms" for x in d.get("warmup_ms") or []) or "none"
    return [*out, "", f"Warm-up changes right after the page loaded (not counted): {warmup}."]


def _profile(results: Mapping[str, Any]) -> list[str]:
    p = results.get("profile") or {}
    wall = p.get("wall_ms") or {}
    labels = {
        "read_decode_all_inputs": "read + decode every input (start-up; a change re-reads one)",
        "build": "pipeline.build",
        "render_both": "render both documents (orjson)",
        "publish_both_fsync": "publish both files, fsync on",
        "publish_both_no_fsync": "publish both files, fsync off",
    }
    out = table(("step (realistic book)", "min / p50 / p99 ms"),
                ((labels.get(k, k), trio(v)) for k, v in wall.items()))  # fmt: skip
    dp = p.get("daemon_pass_ms") or {}
    if dp:
        out += ["", "A daemon-shaped pass after the risk snapshot was replaced (the long-lived "
                "reader stats every input and re-reads only the changed one):", ""]  # fmt: skip
        names = {"read_changed": "stat all + read + decode the changed input", "build":
                 "pipeline.build", "publish_fsync": "render + publish both, fsync on",
                 "total": "whole pass"}  # fmt: skip
        out += table(("step", "min / p50 / p99 ms"),
                     ((names.get(k, k), trio(v)) for k, v in dp.items()))  # fmt: skip
    out += ["", f"cProfile of `pipeline.build`, {p.get('reps')} builds "
            f"({_num(p.get('profiled_build_us')) or 0:,.0f} µs each under the profiler), "
            "own time by module:", ""]  # fmt: skip
    out += table(
        ("module", "own µs per build", "share"),
        ((m["module"], f"{m['own_us_per_build']:,.1f}", f"{100 * m['share']:.1f} %")
         for m in (p.get("modules") or [])[:10]),
    )  # fmt: skip
    out += ["", "Functions with the most own time:", ""]
    out += table(
        ("function", "calls per build", "own µs", "cumulative µs", "share"),
        ((f"`{f['function']}`", f"{f['calls_per_build']:,.0f}", f"{f['own_us_per_build']:,.1f}",
          f"{f['cum_us_per_build']:,.1f}", f"{100 * (f['own_share'] or 0):.1f} %")
         for f in p.get("top_functions") or ()),
    )  # fmt: skip
    return out


def _findings(results: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per target: verdict, what was changed, why it is (not) met; figures from this run."""
    figures = facts(results)
    out: list[str] = []
    for r in rows:
        note = NOTES.get(r["id"], {})
        why = note.get("missed" if r["met"] is False else "met", "")
        parts = [note.get("changed", ""), why]
        if r["met"] is False and not why:
            parts.append("No explanation recorded.")
        text = " ".join(render(p, figures) for p in parts if p)
        out.append(f"- **{r['target']}**: {verdict(r['met'])}, {r['measured']}. {text}".rstrip())
    return [*out, "", render(GENERAL, figures)]


METHOD = """\
- Every publisher runs as its own process, started by the benchmark: the daemon as
  `python -m kpi_publisher run --state-dir … --out-dir … --fsync|--no-fsync` with production
  defaults otherwise, each floor as `python -m bench.floor`, the polling loop as
  `python -m bench.polling`. Each watches its own copy of the book.
- A sample: the next version of `logs/state/risk_snapshot.json` is written to a temp name,
  then t0 is taken and the file is `os.replace`d into place, as the executor does. The
  prober blocks on raw inotify (ctypes, `IN_MOVED_TO`) on the out dir; t1 is taken when
  `kpis_v7.json` is renamed into place and its content carries the sample's marker (the
  fee figure, read back after t1). A heartbeat publish in between is skipped, not counted.
- The daemon and both floors are sampled interleaved, one sample each per round in a
  shuffled order with 20-40 ms pauses, so they share the same machine state and the ratios
  hold even when the absolute numbers move. Each daemon sample waits until the daemon has
  been quiet for its debounce (50 ms) + 15 ms, so each change is a leading edge.
- The floor copies the changed file's bytes to `kpis_v7.json` with the publisher's own
  atomic writer (one file; the daemon writes two). The raw-inotify floor is the least any
  publisher can do; the watchdog floor is the least a watchdog-based one can do.
- The polling baseline is this project's reader, pipeline and publisher on a 1 s timer;
  each sample is written at a random phase of the timer.
- CPU time is utime + stime from /proc/<pid>/stat (all threads; 10 ms ticks); peak RSS is
  VmHWM from /proc/<pid>/status. The idle daemon runs beside the other measurements (its
  CPU time is its own), which keeps the whole run under five minutes.
- Percentiles are nearest-rank; p99 of n samples is the ceil(0.99 n)-th smallest.
- Reproduce: `hedge-kpi bench` (this report) or `hedge-kpi bench --quick --out DIR`."""


def markdown(results: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    plan = _get(results, "plan", "name")
    met = sum(1 for r in rows if r["met"] is True)
    parts: list[list[str] | str] = [
        "# Benchmarks",
        f"Generated by `hedge-kpi bench{' --quick' if plan == 'quick' else ''}` "
        f"(plan `{plan}`) on {results.get('started_at')}; {met} of {len(rows)} targets met. "
        "Times are milliseconds unless marked; \"min / p50 / p99\" are over the samples "
        f"counted. Raw numbers: `{JSON_NAME}`; plot: `{PNG_NAME}`.",
        f"![latency distributions, scaling and burst lag]({PNG_NAME})",
        SECTIONS[0], _machine(results),
        SECTIONS[1], _targets(rows),
        SECTIONS[2],
        "From `os.replace` of the risk snapshot to the new `kpis_v7.json` visible to an inotify "
        "reader. The daemon pass is its own `publish` log line: read, build, render, publish.",
        _e2e(results),
        SECTIONS[3],
        "Same run, same schedule: each floor is a process that watches the same kind of file "
        "and republishes its bytes atomically, with no parsing and no transforms.",
        _floor(results),
        SECTIONS[4], _polling(results),
        SECTIONS[5],
        "In process, no watcher and no I/O except the reads: a book of N symbols with N/5 "
        "positions, timed with the garbage collector set up as `hedge-kpi run` sets it "
        "(start-up objects frozen, young-generation threshold raised).",
        _scaling(results),
        SECTIONS[6],
        "The executor rewrites the risk snapshot on a fixed schedule; the daemon coalesces.",
        _burst(results),
        SECTIONS[7], _idle(results),
        SECTIONS[8],
        "Same documents: every input file decoded, both outputs encoded (sorted keys, compact).",
        _json(results),
        SECTIONS[9], _dashboard(results),
        SECTIONS[10], _profile(results),
        SECTIONS[11], _findings(results, rows),
        SECTIONS[12], METHOD,
    ]  # fmt: skip
    lines: list[str] = []
    for part in parts:
        lines.extend(part if isinstance(part, list) else [part])
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -- plot ---------------------------------------------------------------------------------------


def _cdf(ax: Any, samples: Sequence[float], label: str) -> None:
    if not samples:
        return
    xs = sorted(samples)
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=f"{label} (n={len(xs)})")


def plot(results: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    names = {"ours": "hedge-kpi run", "floor_inotify": "floor (raw inotify)",
             "floor_watchdog": "floor (watchdog)"}  # fmt: skip
    for ax, book in ((axes[0][0], "realistic"), (axes[0][1], "large")):
        c = case(results, book, True)
        for key, label in names.items():
            _cdf(ax, _get(c, "samples_ms", key) or [], label)
        if book == "realistic":
            _cdf(ax, _get(results, "polling", "samples_ms") or [], "polling every 1 s")
        ax.set_xscale("log")
        ax.set_xlabel("rename → kpis_v7.json visible (ms, log)")
        ax.set_ylabel("fraction of samples")
        ax.set_title(f"{book} book, fsync on")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[1][0]
    sizes = _get(results, "scaling", "sizes") or []
    if sizes:
        n = [s["n_symbols"] for s in sizes]
        for key, label in (("build_render_ms", "build + render"),
                           ("read_decode_ms", "read + decode all inputs")):  # fmt: skip
            ax.plot(n, [s[key]["median"] for s in sizes], marker="o", label=label)
        # Slope 1 through the largest book: a linear build lies on it; fixed costs sit above.
        top = sizes[-1]["build_render_ms"]["median"]
        ax.plot(n, [top * x / n[-1] for x in n], linestyle=":", color="grey", label="linear")
        ax.axhline(50.0, color="red", linestyle="--", linewidth=1, label="50 ms target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("symbols in the book (log)")
    ax.set_ylabel("median ms (log)")
    ax.set_title("pipeline cost against book size")
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1][1]
    series = _get(results, "burst", "lag_series") or []
    if series:
        ax.plot([p[0] for p in series], [p[1] for p in series], linewidth=0.7, label="lag")
        bound = _num(_get(results, "burst", "coalescing_bound_ms")) or 0.0
        ax.axhline(bound + 10.0, color="red", linestyle="--", linewidth=1, label="bound + 10 ms")
        ax.legend(fontsize=8)
    ax.set_xlabel("time into the burst (s)")
    ax.set_ylabel("write → visible (ms)")
    ax.set_title("burst: lag of the output behind each write")
    ax.grid(True, alpha=0.3)
    fig.suptitle(f"hedge-kpi benchmarks ({results.get('started_at')}, plan "
                 f"{_get(results, 'plan', 'name')})")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(
    results: dict[str, Any], out_dir: Path, *, plotter: Callable[..., None] = plot
) -> list[Path]:
    """Write BENCHMARKS.md, benchmarks.png and benchmarks.json into `out_dir`."""
    rows = results.get("targets") or evaluate(results)
    results["targets"] = rows
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png, js = out_dir / MD_NAME, out_dir / PNG_NAME, out_dir / JSON_NAME
    plotter(results, png)
    js.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    md.write_text(markdown(results, rows))
    return [md, png, js]
