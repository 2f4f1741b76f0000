"""The overview page under Streamlit's AppTest, over fixture published files."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.text import md_escape
from kpi_publisher import fs
from kpi_publisher.contract import NAV_HISTORY_FILE, NAV_HISTORY_SCHEMA
from kpi_publisher.render import render
from tests.dashboard import published
from tests.dashboard.test_history_panel import history_docs

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


@pytest.fixture
def out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("sys.argv", ["app.py"])
    for name in ("KPI_CONFIG_FILE", "KPI_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KPI_OUT_DIR", str(tmp_path))
    monkeypatch.setenv("KPI_HEARTBEAT_S", "5")
    return tmp_path


def run_app() -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=30)
    app.run()
    assert not app.exception, app.exception
    return app


def metrics(app: AppTest) -> dict[str, str]:
    """Card label -> value as the page shows it (values are Markdown-escaped)."""
    return {m.label: unescape(m.value) for m in app.metric}


BADGE = re.compile(r"^:(\w+)-badge\[(.*)\]$", re.S)


def unescape(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


def badges(app: AppTest) -> list[str]:
    """Badges as "color: text", Markdown escapes removed."""
    found = [BADGE.match(m.value) for m in app.markdown]
    return [f"{m[1]}: {unescape(m[2])}" for m in found if m]


def texts(app: AppTest) -> str:
    return "\n".join(t.value for t in app.text)


def test_full_book_shows_every_card(out_dir: Path) -> None:
    """Each overview card shows the published value, formatted by kpi_publisher.fmt."""
    published.publish(out_dir, "full", time.time())
    assert metrics(run_app()) == published.FULL_CARDS


def test_full_book_captions_carry_age_regime_and_slippage_range(out_dir: Path) -> None:
    """NAV age, ATR regime and the q25..q75 slippage range sit under their cards."""
    published.publish(out_dir, "full", time.time())
    captions = [unescape(c.value) for c in run_app().caption]
    assert "age 12s" in captions
    assert "regime elevated" in captions
    assert "q25–q75 0.80 – 2.75 bps" in captions


def test_healthy_publish_shows_the_green_badge_only(out_dir: Path) -> None:
    published.publish(out_dir, "full", time.time())
    assert badges(run_app()) == ["green: publisher up · all sources ok"]


def test_missing_values_render_en_dash(out_dir: Path) -> None:
    """A null in the published file is an en dash on every card: never 0.00, never a default FX."""
    published.publish(out_dir, "nulls", time.time())
    shown = metrics(run_app())
    assert shown == {
        "NAV (USD)": "–",
        "NAV (ZAR)": "–",
        "AUM (USD)": "–",
        "AUM (ZAR)": "–",
        "Drawdown": "–",
        "ATR ratio": "–",
        "Router fill / fallback": "– / –",
        "Slippage q50": "–",
        "Fee / PnL": "–",
        "DD state": "–",
        "Exposure": "– / –",
        "VaR": "–",
    }


def test_no_usd_zar_rate_is_said_not_assumed(out_dir: Path) -> None:
    published.publish(out_dir, "nulls", time.time())
    captions = [unescape(c.value) for c in run_app().caption]
    assert "no USD/ZAR rate" in captions
    assert "unpriced: Futures, XAUT" in captions


def test_zeros_render_as_zero(out_dir: Path) -> None:
    """A real 0.0 is a value: 0.00 (or 0.0% / 0.00 bps), never the missing marker."""
    published.publish(out_dir, "zeros", time.time())
    assert metrics(run_app()) == {
        "NAV (USD)": "0.00",
        "NAV (ZAR)": "0.00",
        "AUM (USD)": "0.00",
        "AUM (ZAR)": "0.00",
        "Drawdown": "0.00%",
        "ATR ratio": "0.00",
        "Router fill / fallback": "0.0% / 0.0%",
        "Slippage q50": "0.00 bps",
        "Fee / PnL": "0.0%",
        "DD state": "cautious",
        "Exposure": "– / –",  # a NAV of 0 gives no share of NAV
        "VaR": "0.00%",
    }


def test_stale_invalid_missing_sources_get_badges(out_dir: Path) -> None:
    """Every source the publisher did not mark ok gets its own badge, in source order."""
    published.publish(out_dir, "stale", time.time())
    app = run_app()
    assert badges(app) == [
        "orange: nav_state stale",
        "red: router invalid",
        "red: holdings missing",
    ]
    assert "router_health.json: not valid JSON" in texts(app)


def test_publisher_down_after_three_heartbeats(out_dir: Path) -> None:
    """kpis_v7.json 16 s old with a 5 s heartbeat: "publisher down"; values stay visible."""
    published.publish(out_dir, "full", time.time() - 16.0)
    app = run_app()
    assert badges(app) == ["red: publisher down"]
    assert metrics(app)["NAV (USD)"] == "10,234.50"


def test_publisher_up_within_three_heartbeats(out_dir: Path) -> None:
    published.publish(out_dir, "full", time.time() - 10.0)
    assert "red: publisher down" not in badges(run_app())


def test_heartbeat_is_configurable(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KPI_HEARTBEAT_S=10: a 16 s old publish is within three heartbeats."""
    monkeypatch.setenv("KPI_HEARTBEAT_S", "10")
    published.publish(out_dir, "full", time.time() - 16.0)
    assert badges(run_app()) == ["green: publisher up · all sources ok"]


def test_no_published_files_is_said_plainly(out_dir: Path) -> None:
    app = run_app()
    assert badges(app) == [
        "red: kpis_v7.json missing",
        "red: positions_v7.json missing",
    ]
    assert set(metrics(app).values()) <= {"–", "– / –"}


def test_torn_file_keeps_last_good_values(out_dir: Path) -> None:
    """A torn kpis_v7.json after a good one: the good values stay, flagged as a stale read."""
    published.publish(out_dir, "full", time.time())
    app = run_app()
    (out_dir / "kpis_v7.json").write_bytes(b'{"schema": "hedge.kpis_v7", "nav": {"nav_')
    app.run()
    assert metrics(app)["NAV (USD)"] == "10,234.50"
    assert "red: kpis_v7.json invalid (stale read)" in badges(app)


def test_positions_table_cells_are_the_shared_formatters_texts(out_dir: Path) -> None:
    """The contract's columns, each cell the text kpi_publisher.fmt makes (missing is the
    marker, a percent has its sign), each column given a width (never measured by the grid)."""
    published.publish(out_dir, "full", time.time())
    table = run_app().dataframe[0]
    assert table.proto.placeholder == "–"
    frame = table.value
    assert list(frame.columns) == [
        "symbol",
        "side",
        "qty",
        "entry",
        "mark",
        "notional_fmt",
        "pnl_fmt",
        "leverage",
        "atr_ratio",
        "dd_today",
        "dd_state",
    ]
    assert frame.to_dict("list") == {
        "symbol": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
        "side": ["LONG", "SHORT", "LONG"],
        "qty": ["0.10", "-1.50", "10.00"],
        "entry": ["67,000.00", "3,500.00", "150.00"],
        "mark": ["67,123.40", "3,512.00", "–"],
        "notional_fmt": ["6,712.34", "5,268.00", "1,500.00"],
        "pnl_fmt": ["12.34", "-18.00", "–"],
        "leverage": ["3.00x", "2.00x", "–"],
        "atr_ratio": ["1.31", "0.94", "1.62"],
        "dd_today": ["0.55%", "0.00%", "2.10%"],
        "dd_state": ["cautious", "normal", "defensive"],
    }
    config = json.loads(table.proto.columns)
    assert all(isinstance(config[c]["width"], int) for c in frame.columns)
    assert config["entry"]["alignment"] == "right" and config["symbol"]["alignment"] == "left"


def chart_specs(app: AppTest) -> dict[str, dict[str, Any]]:
    """Plotly figures on the page by panel: "aum" (the pie), "router", "symbols"."""
    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    return {_chart_name(s): s for s in specs}


def _chart_name(spec: dict[str, Any]) -> str:
    if spec["data"][0]["type"] == "pie":
        return "aum"
    titles = [a["text"] for a in spec["layout"].get("annotations", [])]
    return "router" if any("Slippage" in t for t in titles) else "symbols"


def test_charts_show_the_published_figures(out_dir: Path) -> None:
    """Donut: one slice per asset; symbols: ATR and DD by symbol; router: q25/q50/q75, fill."""
    published.publish(out_dir, "full", time.time())
    specs = chart_specs(run_app())
    assert sorted(specs) == ["aum", "router", "symbols"]
    pie = specs["aum"]["data"][0]
    assert (pie["labels"], pie["values"]) == (
        ["Futures", "BTC", "XAUT", "USDC"],
        [10234.5, 4321.0, 1310.3, 500.0],
    )
    atr, dd = specs["symbols"]["data"]
    assert (atr["x"], atr["y"]) == (["BTCUSDT", "ETHUSDT", "SOLUSDT"], [1.31, 0.94, 1.62])
    assert dd["y"] == [0.55, 0.0, 2.1]
    slip, *rest = specs["router"]["data"]
    fill, fallback = (t for t in rest if t["type"] == "bar")
    # one row per symbol from router.symbols (SOLUSDT has slippage only: no rates, the marker)
    assert slip["y"] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert (slip["x"], fill["y"], fallback["y"]) == ([1.2, 2.4, 3.1], [70.0, 50.0], [10.0, 25.0])
    assert [(t["x"], t["text"]) for t in rest if t["type"] == "scatter"] == [
        (["SOLUSDT"], ["–"]),
        (["SOLUSDT"], ["–"]),
    ]


def test_panels_without_data_say_so(out_dir: Path) -> None:
    """No valued asset, no symbols, no router figures: no empty charts, a plain sentence each."""
    published.publish(out_dir, "nulls", time.time())
    app = run_app()
    assert chart_specs(app) == {}
    captions = [unescape(c.value) for c in app.caption]
    for sentence in (
        "AUM: no valued assets",
        "no per-symbol ATR or drawdown published",
        "no router figures published",
    ):
        assert sentence in captions


def test_var_card_shows_its_limit_and_turns_red_when_breached(out_dir: Path) -> None:
    """VaR 4.56 % under a 12 % limit: plain caption; VaR 12.5 % over it: a red "over limit"."""
    published.publish(out_dir, "full", time.time())
    captions = [c.value for c in run_app().caption]
    assert md_escape("limit 12.00% · 99% conf · worst CVaR 3.10%") in captions
    assert not any(c.startswith(":red[") for c in captions)

    docs = published.publish(out_dir, "full", time.time())
    docs["kpis_v7.json"]["risk"].update(var_pct=12.5)
    published.write_doc(out_dir, "kpis_v7.json", docs["kpis_v7.json"])
    app = run_app()
    assert metrics(app)["VaR"] == "12.50%"
    red = [c.value for c in app.caption if c.value.startswith(":red[")]
    assert red == [f":red[{md_escape('over limit · limit 12.00% · 99% conf · worst CVaR 3.10%')}]"]


def test_exposure_card_shows_gross_and_net_share_of_nav(out_dir: Path) -> None:
    published.publish(out_dir, "full", time.time())
    app = run_app()
    assert metrics(app)["Exposure"] == "131.71% / 28.77%"
    assert "gross / net of NAV" in [unescape(c.value) for c in app.caption]


# -- documents off the contract ------------------------------------------------------------------


def test_page_badges_an_invalid_history_and_keeps_the_last_good_curve(out_dir: Path) -> None:
    now = time.time()
    published.publish(out_dir, "full", now)
    _, history = history_docs(now)
    fs.write_atomic(out_dir / NAV_HISTORY_FILE, render(history), fsync=False)
    app = run_app()
    assert "red: nav_history_v7.json invalid (stale read)" not in badges(app)
    bad = {**history, "windows": {**history["windows"], "7d": {"t": 5, "nav_usd": "x"}}}
    (out_dir / NAV_HISTORY_FILE).write_bytes(render(bad))
    app.run()
    assert not app.exception, app.exception
    assert "red: nav_history_v7.json invalid (stale read)" in badges(app)
    assert len(app.get("plotly_chart")) >= 2  # the last good curve is still drawn


def test_page_with_hostile_documents_does_not_raise(out_dir: Path) -> None:
    now = time.time()
    docs = published.publish(out_dir, "full", now)
    kpis = docs["kpis_v7.json"]
    hostile = {
        **kpis,
        "aum": {**kpis["aum"], "unpriced": 5},
        "performance": {"windows": None, "ratios": {"30d": {"sharpe": 1.0}}},
    }
    published.write_doc(out_dir, "kpis_v7.json", hostile)
    (out_dir / NAV_HISTORY_FILE).write_bytes(
        render({"schema": NAV_HISTORY_SCHEMA, "windows": {"24h": {"t": "abcdef"}}})
    )
    app = run_app()
    captions = [c.value for c in app.caption]
    assert "all assets priced" not in captions  # a number is no list of names: unknown
    assert "red: nav_history_v7.json invalid" in badges(app)


# -- two files, one page: they must be of one publish ---------------------------------------------


def test_kpis_and_positions_of_two_publishes_get_a_badge(out_dir: Path) -> None:
    """positions_v7.json 30 s older than kpis_v7.json (still apart when read again): never the
    green "all sources ok" beside a table the cards were not computed from (check exits 6)."""
    now = time.time()
    docs = published.publish(out_dir, "full", now)
    older = published.restamp(docs["positions_v7.json"], now - 30.0)
    older["positions"] = older["positions"][:1]
    published.write_doc(out_dir, "positions_v7.json", older)
    app = run_app()
    assert badges(app) == ["red: kpis and positions of two publishes"]
    assert "positions_v7.json is 30s older: the positions table and the cards may disagree" in (
        texts(app)
    )
    published.publish(out_dir, "full", time.time())
    app.run()
    assert badges(app) == ["green: publisher up · all sources ok"]


# -- the history beside the KPIs it belongs with --------------------------------------------------


def history_charts(app: AppTest) -> int:
    return sum("Equity curve" in c.proto.spec for c in app.get("plotly_chart"))


def infos(app: AppTest) -> list[str]:
    return [unescape(i.value) for i in app.info]


def test_an_old_curve_is_not_drawn_beside_kpis_without_performance(out_dir: Path) -> None:
    """`hedge-kpi once` after a `run`: kpis_v7.json without a performance block, the run's
    nav_history_v7.json still there: no curve under "no NAV history published yet", a reason."""
    now = time.time()
    published.publish(out_dir, "full", now)
    _, history = history_docs(now)
    fs.write_atomic(out_dir / NAV_HISTORY_FILE, render(history), fsync=False)
    app = run_app()
    assert history_charts(app) == 0
    (info,) = infos(app)
    assert info.startswith("nav_history_v7.json (written ")
    assert info.endswith(
        "is not drawn: these KPIs carry no performance block, so it is not of this publish"
    )


def test_a_curve_that_stopped_is_not_drawn_beside_newer_kpis(out_dir: Path) -> None:
    """The KPIs' history ends 3 days after the curve's last point (over 3 heartbeats, 15 s):
    the curve is of another run or no longer written; within 15 s it is drawn, with its age."""
    now = time.time()
    docs = published.publish(out_dir, "full", now)
    performance, history = history_docs(now)
    kpis = {**docs["kpis_v7.json"], "performance": performance}
    published.write_doc(out_dir, "kpis_v7.json", kpis)
    _, old = history_docs(now - 3 * 86400.0)
    fs.write_atomic(out_dir / NAV_HISTORY_FILE, render(old), fsync=False)
    app = run_app()
    assert history_charts(app) == 0
    (info,) = infos(app)
    assert "its curve ends" in info and "3d 00h before the KPIs' history (allowed 15s)" in info

    fs.write_atomic(out_dir / NAV_HISTORY_FILE, render(history), fsync=False)
    app = run_app()
    assert history_charts(app) == 1
    assert any(unescape(c.value).startswith("NAV curve to ") for c in app.caption)
