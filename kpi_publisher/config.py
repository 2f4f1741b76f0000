"""Settings: CLI > environment (KPI_*) > optional TOML file > defaults, frozen once.

Every other module receives a `Settings`; nothing reads the environment on its own. The files
the publisher writes (the published outputs, the NAV history and its SQLite side files,
kpis.prom) must not be any file it reads or another file it writes, nor lie in the state dir
unless they are its outputs there: `resolve` refuses such a combination (`check_paths`), at
start-up and on every reload alike.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kpi_publisher import executor_root, fs
from kpi_publisher.contract import DEFAULT_SYMBOLS_CAP, NAV_HISTORY_FILE, OUTPUT_FILES
from kpi_publisher.fs import DURABILITIES, FAST
from kpi_publisher.history.store import SIDE_SUFFIXES

DEFAULT_DURABILITY = FAST
# What `prom_dir` receives (the textfile collector reads `*.prom`).
PROM_FILE = "kpis.prom"

# Seconds after which a source counts as stale (docs/CONTRACT_RULES.md, rule 10); None = never.
# One entry per source (contract.SOURCE_NAMES): the [stale_s] table accepts exactly these names.
DEFAULT_STALE_S: Mapping[str, float | None] = {
    "nav_state": 90.0,
    "nav": 90.0,
    "risk": 300.0,
    "router": 300.0,
    "positions": 300.0,
    "fx": 3600.0,
    "holdings": None,
    "risk_advanced": 300.0,
}


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    """Everything the publisher needs, resolved once. Paths are absolute."""

    state_dir: Path = executor_root.STATE_DIR
    out_dir: Path | None = None  # None: publish into state_dir
    fx_path: Path | None = None  # None: <state>/../cache/coingecko_cache.json
    holdings_path: Path | None = None  # None: <state>/../../config/offexchange_holdings.json
    prom_dir: Path | None = None
    host_label: str = ""
    account_label: str = ""
    config_file: Path | None = None

    nav_fresh_s: float = 90.0
    stale_s: Mapping[str, float | None] = field(default_factory=lambda: dict(DEFAULT_STALE_S))
    symbols_cap: int = DEFAULT_SYMBOLS_CAP
    max_input_bytes: int = 16 * 1024 * 1024

    debounce_ms: float = 50.0
    heartbeat_s: float = 5.0
    rescan_s: float = 2.0
    retry_ms: float = 100.0
    fsync: bool = True
    durability: str = DEFAULT_DURABILITY  # fast: rename, then fsync | strict: fsync, then rename
    log_format: str = "auto"  # auto | json | console
    metrics_port: int | None = None
    history_path: Path | None = None  # None: beside the crash log, in the private runtime dir
    history_retention_days: float = 400.0

    @property
    def publish_dir(self) -> Path:
        """Directory that receives kpis_v7.json and positions_v7.json."""
        return self.out_dir if self.out_dir is not None else self.state_dir

    @property
    def prom_path(self) -> Path | None:
        """The kpis.prom file, when prom_dir is set."""
        return None if self.prom_dir is None else self.prom_dir / PROM_FILE

    @property
    def resolved_fx_path(self) -> Path:
        if self.fx_path is not None:
            return self.fx_path
        return executor_root.fx_path_beside(self.state_dir)

    @property
    def resolved_holdings_path(self) -> Path:
        if self.holdings_path is not None:
            return self.holdings_path
        return executor_root.holdings_path_above(self.state_dir)

    def stale_limit_s(self, source: str) -> float | None:
        return self.stale_s.get(source, 300.0)


_PATH_FIELDS = {
    "state_dir",
    "out_dir",
    "fx_path",
    "holdings_path",
    "prom_dir",
    "config_file",
    "history_path",
}
_INT_FIELDS = {"symbols_cap", "max_input_bytes", "metrics_port"}
_BOOL_FIELDS = {"fsync"}
_STR_FIELDS = {"host_label", "account_label", "log_format", "durability"}
LOG_FORMATS = ("auto", "json", "console")
_CHOICES = {"log_format": LOG_FORMATS, "durability": DURABILITIES}
# Linux's limits (every file system we run on has these or larger ones); a path past them
# fails every stat with ENAMETOOLONG.
_NAME_MAX = 255
_PATH_MAX = 4096
FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Settings))
# A config file names its own location only on the command line or in KPI_CONFIG_FILE.
FILE_KEYS = FIELD_NAMES - {"config_file"}
NEVER = "never"
# A config file is a few hundred bytes; a larger one is not a config file.
CONFIG_MAX_BYTES = 1024 * 1024
YEAR_S = 365 * 24 * 3600.0


@dataclass(frozen=True)
class Range:
    """The usable values of a numeric setting, in its own unit; `low_open`: low itself is not."""

    low: float
    high: float
    unit: str
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def __str__(self) -> str:
        low = f"> {plain(self.low)}" if self.low_open else f">= {plain(self.low)}"
        return f"{low} and <= {plain(self.high)} {self.unit}"


def plain(value: float) -> str:
    """A range edge as the README writes it: 0.001, 3600, 31536000 (no exponent)."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


# The documented range of every numeric setting (README, settings table).
RANGES: Mapping[str, Range] = {
    "debounce_ms": Range(0, 10_000, "ms"),
    "heartbeat_s": Range(0.001, 3600, "s"),
    "rescan_s": Range(0.1, 3600, "s"),
    "retry_ms": Range(1, 60_000, "ms"),
    "nav_fresh_s": Range(0, YEAR_S, "s", low_open=True),
    "symbols_cap": Range(1, 100_000, "symbols"),
    "max_input_bytes": Range(1024, 1024**3, "bytes"),
    "metrics_port": Range(0, 65_535, "(0 = any free port)"),
    "history_retention_days": Range(1, 36_500, "days"),
}
STALE_RANGE = Range(0, YEAR_S, "s", low_open=True)  # each [stale_s] limit, or "never"

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TOML_TYPES = {
    str: "a string",
    list: "an array",
    dict: "a table",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
}


@dataclass(frozen=True)
class Origin:
    """Where a value came from, so an error names it: the command line, KPI_*, or a file.

    Values from a file already have their TOML type (a number must be a number); values from
    the command line or the environment may be text, parsed here.
    """

    kind: str  # "option" | "environment" | "file"
    file: Path | None = None

    @property
    def typed(self) -> bool:
        return self.kind == "file"

    def where(self, name: str) -> str:
        if self.kind == "file":
            return f"config file {self.file}"
        if self.kind == "environment":
            return f"environment KPI_{name.upper()}"
        return f"option --{name.replace('_', '-')}"


CLI = Origin("option")
ENV = Origin("environment")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad(origin: Origin, name: str, problem: str, value: Any) -> ConfigError:
    return ConfigError(f"{origin.where(name)}: {name} {problem}, got {_shown(value)}")


def _type_name(value: Any) -> str:
    return _TOML_TYPES.get(type(value), f"a {type(value).__name__}")


def _number(name: str, value: Any, origin: Origin, limits: Range) -> float:
    """A finite float within `limits`; bools, text in a file, nan and inf are refused."""
    if isinstance(value, bool):
        raise _bad(origin, name, "must be a number, not a boolean", value)
    if isinstance(value, int):
        if value not in limits:  # int against float compares exactly, never overflows
            raise _bad(origin, name, f"must be {limits}", value)
        return float(value)
    if isinstance(value, float):
        out = value
    elif isinstance(value, str) and not origin.typed:
        text = value.strip()
        if _DECIMAL.fullmatch(text):
            out = float(text)
        else:
            try:
                out = float(text)
            except ValueError:
                out = 0.0
            if math.isfinite(out):  # words, "1_0", "0x10", other digits: not a number here
                raise _bad(origin, name, "must be a number", value)
    else:
        raise _bad(origin, name, f"must be a number, not {_type_name(value)}", value)
    if not math.isfinite(out):
        raise _bad(origin, name, "must be a finite number", value)
    if out not in limits:
        raise _bad(origin, name, f"must be {limits}", value)
    return out


def _integer(name: str, value: Any, origin: Origin, limits: Range) -> int:
    out = _number(name, value, origin, limits)
    if not out.is_integer():
        raise _bad(origin, name, "must be a whole number", value)
    return int(out)


def _text(name: str, value: Any, origin: Origin) -> str:
    """A string usable in a path, a label or a log line: no NUL, valid Unicode (paths from the
    environment may carry undecodable bytes as surrogate escapes: those stay usable)."""
    if isinstance(value, os.PathLike) and not origin.typed:
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _bad(origin, name, f"must be a string, not {_type_name(value)}", value)
    if "\x00" in value:
        raise _bad(origin, name, "must not contain a NUL character", value)
    return value


def _stale_limits(value: Any, origin: Origin) -> dict[str, float | None]:
    """The [stale_s] table over the defaults: each limit a positive number of seconds or
    "never" (0, false and nan are errors, never a silent "never stale")."""
    if not isinstance(value, Mapping):
        raise _bad(origin, "stale_s", 'must be a table of source = seconds or "never"', value)
    unknown = sorted(str(k) for k in value if k not in DEFAULT_STALE_S)
    if unknown:
        raise ConfigError(
            f"{origin.where('stale_s')}: unknown sources under stale_s: {', '.join(unknown)} "
            f"(known: {', '.join(DEFAULT_STALE_S)})"
        )
    merged: dict[str, float | None] = dict(DEFAULT_STALE_S)
    for key, limit in value.items():
        if limit is None or (isinstance(limit, str) and limit == NEVER):
            merged[key] = None
        else:
            merged[key] = _number(f"stale_s.{key}", limit, origin, STALE_RANGE)
    return merged


def _coerce(name: str, value: Any, origin: Origin = CLI) -> Any:
    """`value` of setting `name` from `origin`, as Settings holds it; ConfigError if unusable."""
    if value is None:
        return None
    if name in _PATH_FIELDS:
        text = _text(name, value, origin)
        if not text.strip():
            raise _bad(origin, name, "must not be empty", value)
        try:
            path = Path(os.path.expanduser(text)).absolute()
        except OSError as exc:  # a relative path while the working directory is gone
            raise _bad(origin, name, f"cannot be made absolute ({exc.strerror})", value) from exc
        if problem := _unusable_path(path):  # every stat of it would fail: say so once, here
            raise _bad(origin, name, problem, value)
        return path
    if name in RANGES:
        if name in _INT_FIELDS:
            return _integer(name, value, origin, RANGES[name])
        return _number(name, value, origin, RANGES[name])
    if name in _BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and not origin.typed:
            text = value.strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
        raise _bad(origin, name, "must be a boolean", value)
    if name in _STR_FIELDS:
        text = _text(name, value, origin)
        choices = _CHOICES.get(name)
        if choices is not None and text not in choices:
            raise _bad(origin, name, f"must be {', '.join(choices[:-1])} or {choices[-1]}", value)
        if choices is None and not text.isprintable():
            raise _bad(origin, name, "must be printable text", value)
        return text
    if name == "stale_s":
        return _stale_limits(value, origin)
    raise ConfigError(f"{origin.where(name)}: unknown setting {name!r}")


def _unusable_path(path: Path) -> str | None:
    """Why no file could ever live at `path` (a name or a path longer than the file system
    allows), or None. (A NUL character is refused with every text value.)"""
    for part in path.parts:
        if len(os.fsencode(part)) > _NAME_MAX:
            return f"has a name longer than {_NAME_MAX} bytes"
    if len(os.fsencode(str(path))) >= _PATH_MAX:
        return f"is longer than {_PATH_MAX - 1} bytes"
    return None


def _read_config(path: Path) -> str:
    """The text of the config file, read like any input: never blocks on a FIFO, size-capped."""
    try:
        raw, _ = fs.read_bytes(path, max_bytes=CONFIG_MAX_BYTES)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path}: not found") from exc
    except fs.ReadError as exc:
        raise ConfigError(f"config file {path}: {exc.reason}") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:  # e.g. a NUL in the path
        raise ConfigError(f"config file {path}: cannot read: {exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {path}: not UTF-8 (byte 0x{raw[exc.start]:02x} on line {line})"
        ) from exc


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config file; keys are Settings field names, at top level or all under a
    `[kpi]` table. Any failure to read, decode or parse it, and any unknown key, is a
    ConfigError naming the file and the reason."""
    text = _read_config(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: nested too deeply") from exc
    if "kpi" in data:
        if not isinstance(data["kpi"], dict):
            raise ConfigError(f"config file {path}: kpi must be a table ([kpi])")
        beside = sorted(k for k in data if k != "kpi")
        if beside:
            raise ConfigError(
                f"config file {path}: keys beside the [kpi] table: {', '.join(beside)} "
                "(put every setting under [kpi], or use no [kpi] table)"
            )
        data = data["kpi"]
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown settings {', '.join(unknown)}")
    return data


# KPI_* variables that are not settings but are read by name elsewhere.
ENV_NOT_SETTINGS = frozenset({"KPI_RUNTIME_DIR"})
ENV_KEYS = {"KPI_" + name.upper(): name for name in FIELD_NAMES - {"stale_s"}}


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings named KPI_<FIELD> in the environment (KPI_STATE_DIR, KPI_FSYNC, ...).

    A KPI_ variable that is no setting but reads like a misspelt one (KPI_HEARTBEAT for
    KPI_HEARTBEAT_S) is a ConfigError naming the setting it resembles: ignored, it would leave
    the default in force while the operator believes otherwise. Other KPI_ names (another
    program's) are left alone. `stale_s` is a table: only the config file sets it."""
    out: dict[str, Any] = {}
    for key, name in ENV_KEYS.items():
        if key in environ and environ[key] != "":
            out[name] = environ[key]
    for key in sorted(environ):
        if not key.startswith("KPI_") or key in ENV_KEYS or key in ENV_NOT_SETTINGS:
            continue
        if key.startswith("KPI_STALE_S"):
            raise ConfigError(
                f"environment {key}: stale_s is a table; set it in the config file's [stale_s]"
            )
        close = difflib.get_close_matches(key, [*ENV_KEYS, *ENV_NOT_SETTINGS], n=1, cutoff=0.8)
        if close:
            raise ConfigError(f"environment {key}: not a setting (did you mean {close[0]}?)")
    return out


def resolve(
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge CLI values (None = not given) over KPI_* env over the TOML file over defaults.

    Every value is validated whatever its origin; ConfigError (naming the origin and the
    reason) is the only exception an unusable setting or config file raises.
    """
    cli = {k: v for k, v in (cli or {}).items() if v is not None and k in FIELD_NAMES}
    env = from_env(os.environ if environ is None else environ)
    layers: list[tuple[Origin, Mapping[str, Any]]] = []
    if cli.get("config_file"):
        config_file = _coerce("config_file", cli["config_file"], CLI)
    elif env.get("config_file"):
        config_file = _coerce("config_file", env["config_file"], ENV)
    else:
        config_file = None
    if config_file is not None:
        layers.append((Origin("file", config_file), load_toml(config_file)))
    layers.extend([(ENV, env), (CLI, cli)])
    merged: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for origin, layer in layers:
        for name, value in layer.items():
            merged[name] = _coerce(name, value, origin)
            origins[name] = origin
    if "state_dir" not in merged:
        merged["state_dir"] = _coerce("state_dir", str(executor_root.STATE_DIR), CLI)
    settings = Settings(**merged)
    check_paths(settings, origins)
    return settings


# -- paths that must not meet ---------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A path the publisher reads or writes for one purpose, and how an error names it."""

    what: str
    path: Path


def _abs(path: Path) -> str:
    return os.path.abspath(path)


def _real(path: Path) -> str:
    return os.path.realpath(path)


def same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` name one file: as written, once symlinks are resolved, or (when
    both exist) as one inode, a hard link."""
    if _abs(a) == _abs(b) or _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def within(path: Path, directory: Path) -> bool:
    """True when `path` is `directory` or lies below it, as written or once symlinks are
    resolved."""
    return fs.inside(path, directory) or fs.inside(Path(_real(path)), Path(_real(directory)))


def read_paths(settings: Settings) -> list[Claim]:
    """Every file the publisher reads outside the state dir (the state dir is refused whole)."""
    # Imported here: the back-fill reads through `sources`, which needs Settings from this module.
    from kpi_publisher.history.backfill import sources as nav_logs

    claims = [
        Claim("fx_path", settings.resolved_fx_path),
        Claim("holdings_path", settings.resolved_holdings_path),
    ]
    if settings.config_file is not None:
        claims.append(Claim("config_file", settings.config_file))
    claims += [
        Claim(f"the executor's NAV log {p.name}", p) for p in nav_logs(settings.state_dir.parent)
    ]
    return claims


def published_paths(settings: Settings) -> list[Claim]:
    """Every file the publisher replaces (not the NAV history, checked on its own)."""
    names = (*OUTPUT_FILES, NAV_HISTORY_FILE)
    claims = [Claim(f"the published {n}", settings.publish_dir / n) for n in names]
    if settings.prom_path is not None:
        claims.append(Claim(f"the published {PROM_FILE}", settings.prom_path))
    return claims


def _refused(origins: Mapping[str, Origin], name: str, problem: str, value: Path) -> ConfigError:
    origin = origins.get(name)
    where = origin.where(name) if origin is not None else f"default {name}"
    return ConfigError(f"{where}: {name} {problem}, got {_shown(str(value))}")


def check_paths(settings: Settings, origins: Mapping[str, Origin] | None = None) -> None:
    """ConfigError (naming the setting) when the publisher would write over a file it reads or
    writes for another purpose, or write into the state dir anything but its outputs.

    The contract lets the publisher write nothing in the state dir but kpis_v7.json and
    positions_v7.json; and a history or kpis.prom put on an input or an output by mistake
    would replace it (a SQLite database where the holdings were)."""
    origins = origins or {}
    reads, published = read_paths(settings), published_paths(settings)
    if settings.history_path is not None:
        _check_history(settings, settings.history_path, reads, published, origins)
    if settings.prom_dir is not None:
        _check_prom(settings, settings.prom_dir, reads, published, origins)
    name = "out_dir" if settings.out_dir is not None else "state_dir"
    for out in published:
        for claim in reads:
            if same_file(out.path, claim.path):
                problem = f"would put {out.path.name} over {claim.what} {claim.path}"
                raise _refused(origins, name, problem, settings.publish_dir)


def _check_history(
    settings: Settings,
    history: Path,
    reads: list[Claim],
    published: list[Claim],
    origins: Mapping[str, Origin],
) -> None:
    """The history database and SQLite's files beside it touch no other path."""
    name, state = "history_path", settings.state_dir
    if within(history, state):
        raise _refused(origins, name, f"must not be inside the state dir {state}", history)
    for suffix in ("", *SIDE_SUFFIXES):
        side = Path(f"{history}{suffix}")
        for claim in (*reads, *published):
            if same_file(side, claim.path):
                problem = f"must not be {claim.what} {claim.path}"
                if suffix:
                    problem = f"must not have SQLite's {suffix} file on {claim.what} {claim.path}"
                raise _refused(origins, name, problem, history)
    dirs = [Claim("the out dir", settings.publish_dir), Claim("the state dir", state)]
    if settings.prom_dir is not None:
        dirs.append(Claim("prom_dir", settings.prom_dir))
    for claim in (*reads, *published, *dirs):
        if within(claim.path, history):
            problem = f"must be a file, not {claim.what} {claim.path} or a directory above it"
            raise _refused(origins, name, problem, history)


def _check_prom(
    settings: Settings,
    prom_dir: Path,
    reads: list[Claim],
    published: list[Claim],
    origins: Mapping[str, Origin],
) -> None:
    """kpis.prom lies outside the state dir and on no other path the publisher uses."""
    name, state, prom_path = "prom_dir", settings.state_dir, prom_dir / PROM_FILE
    if within(prom_dir, state):
        raise _refused(origins, name, f"must not be inside the state dir {state}", prom_dir)
    for claim in (*reads, *(c for c in published if c.path != prom_path)):
        if same_file(prom_dir, claim.path):
            raise _refused(origins, name, f"must not be {claim.what} {claim.path}", prom_dir)
        if same_file(prom_path, claim.path):
            problem = f"would put {PROM_FILE} over {claim.what} {claim.path}"
            raise _refused(origins, name, problem, prom_dir)
