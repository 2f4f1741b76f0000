"""The command table and the executor's tree: every command answers from one table, `run`
loads none of the other commands' code, and every writer of an executor tree puts the files
where the publisher looks for them by default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import book
from execution import demo_executor
from kpi_publisher import cli
from kpi_publisher.config import resolve
from kpi_publisher.executor_root import ExecutorRoot
from kpi_publisher.sources import source_paths
from tests.reliability.helpers import Layout, good_docs

REPO = Path(__file__).resolve().parents[1]
COMMAND_NAMES = ("once", "run", "check", "demo", "dashboard", "bench", "demo-executor")


def test_the_table_holds_every_command_and_help_lists_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert tuple(cli.COMMANDS) == COMMAND_NAMES
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    positions = [listed.index(f"    {name} ") for name in COMMAND_NAMES[:-1]]
    assert positions == sorted(positions)
    assert "    demo-executor\n" in listed
    for name in COMMAND_NAMES:
        assert cli.main([name, "--help"]) == 0
        assert f"usage: hedge-kpi {name}" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "once", "check"])
def test_the_publisher_commands_load_no_dashboard_bench_or_demo_code(command: str) -> None:
    """A supervised `hedge-kpi run` starts without Streamlit, the benchmarks or the demo."""
    probe = (
        "import sys\n"
        "from kpi_publisher import cli\n"
        f"cli.build_parser({command!r})\n"
        "roots = {'dashboard', 'bench', 'execution', 'streamlit', 'pandas', 'plotly'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in roots))\n"
        "print(sorted(m for m in sys.modules if m.startswith('kpi_publisher.demo')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["[]", "[]"]


SOURCES_EVERY_WRITER_HAS = ("nav_state", "nav", "risk", "router", "positions", "fx", "holdings")


def _unfound(root: Path) -> list[str]:
    """The sources the publisher, given only the state dir, finds no file for under `root`."""
    settings = resolve({"state_dir": str(ExecutorRoot(root).state)}, {})
    paths = source_paths(settings)
    return [s for s in SOURCES_EVERY_WRITER_HAS if not any(p.is_file() for p in paths[s])]


def test_the_demo_executor_writes_where_the_publisher_looks(tmp_path: Path) -> None:
    demo_executor.run(demo_executor.DemoOptions(root=tmp_path, interval_s=0.001, cycles=1))
    assert _unfound(tmp_path) == []


def test_the_benchmark_book_lies_where_the_publisher_looks(tmp_path: Path) -> None:
    written = book.write_book(tmp_path, book.REALISTIC)
    assert written.state_dir == ExecutorRoot(tmp_path).state
    assert _unfound(tmp_path) == []


def test_the_test_tree_lies_where_the_publisher_looks(tmp_path: Path) -> None:
    Layout(tmp_path).make().write_all(good_docs())
    assert _unfound(tmp_path) == []


def test_bench_outside_a_checkout_says_where_it_runs() -> None:
    """bench/ is not installed: without it `--help` still lists every command and
    `hedge-kpi bench` exits 2 naming the way to run it, instead of a traceback."""
    probe = (
        "import sys\n"
        "class NoBench:\n"  # as in an installed wheel: no bench package anywhere
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'bench':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoBench())\n"
        "from kpi_publisher import cli\n"
        "print(cli.main(['bench', '--quick']))\n"
        "print(cli.main(['--help']))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    code, *help_lines = done.stdout.splitlines()
    assert code == "2"
    assert "run `python -m bench` from a source checkout" in done.stderr
    assert any(line.strip().startswith("bench ") for line in help_lines)
    assert help_lines[-1] == "0"
