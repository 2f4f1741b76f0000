"""Settings: CLI > environment (KPI_*) > optional TOML file > defaults, frozen once.

Every other module receives a `Settings`; nothing reads the environment on its own.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Seconds after which a source counts as stale (contract 4, `sources`); None = never.
DEFAULT_STALE_S: Mapping[str, float | None] = {
    "nav_state": 90.0,
    "nav": 90.0,
    "risk": 300.0,
    "router": 300.0,
    "positions": 300.0,
    "fx": 3600.0,
    "holdings": None,
}


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    """Everything the publisher needs, resolved once. Paths are absolute."""

    state_dir: Path = Path("logs/state")
    out_dir: Path | None = None  # None: publish into state_dir
    fx_path: Path | None = None  # None: <state>/../cache/coingecko_cache.json
    holdings_path: Path | None = None  # None: <state>/../../config/offexchange_holdings.json
    prom_dir: Path | None = None
    host_label: str = ""
    account_label: str = ""
    config_file: Path | None = None

    nav_fresh_s: float = 90.0
    stale_s: Mapping[str, float | None] = field(default_factory=lambda: dict(DEFAULT_STALE_S))
    symbols_cap: int = 64
    max_input_bytes: int = 16 * 1024 * 1024

    debounce_ms: float = 50.0
    heartbeat_s: float = 5.0
    rescan_s: float = 2.0
    retry_ms: float = 100.0
    fsync: bool = True
    log_format: str = "auto"  # auto | json | console
    metrics_port: int | None = None

    @property
    def publish_dir(self) -> Path:
        """Directory that receives kpis_v7.json and positions_v7.json."""
        return self.out_dir if self.out_dir is not None else self.state_dir

    @property
    def resolved_fx_path(self) -> Path:
        if self.fx_path is not None:
            return self.fx_path
        return self.state_dir.parent / "cache" / "coingecko_cache.json"

    @property
    def resolved_holdings_path(self) -> Path:
        if self.holdings_path is not None:
            return self.holdings_path
        return self.state_dir.parent.parent / "config" / "offexchange_holdings.json"

    def stale_limit_s(self, source: str) -> float | None:
        return self.stale_s.get(source, 300.0)


_PATH_FIELDS = {"state_dir", "out_dir", "fx_path", "holdings_path", "prom_dir", "config_file"}
_FLOAT_FIELDS = {
    "nav_fresh_s",
    "debounce_ms",
    "heartbeat_s",
    "rescan_s",
    "retry_ms",
}
_INT_FIELDS = {"symbols_cap", "max_input_bytes", "metrics_port"}
_BOOL_FIELDS = {"fsync"}
_STR_FIELDS = {"host_label", "account_label", "log_format"}
FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Settings))


def _coerce(name: str, value: Any) -> Any:
    if value is None:
        return None
    try:
        if name in _PATH_FIELDS:
            return Path(os.path.expanduser(str(value))).absolute()
        if name in _FLOAT_FIELDS:
            out = float(value)
            if not out > 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")
            return out
        if name in _INT_FIELDS:
            if isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            return int(value)
        if name in _BOOL_FIELDS:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ConfigError(f"{name} must be a boolean, got {value!r}")
        if name in _STR_FIELDS:
            return str(value)
        if name == "stale_s":
            if not isinstance(value, Mapping):
                raise ConfigError("stale_s must be a table of source -> seconds")
            merged: dict[str, float | None] = dict(DEFAULT_STALE_S)
            for key, limit in value.items():
                merged[str(key)] = None if limit in (None, 0, "never") else float(limit)
            return merged
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot use {value!r} ({exc})") from exc
    raise ConfigError(f"unknown setting {name!r}")


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config file; keys are Settings field names (a `[kpi]` table also works)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    if isinstance(data.get("kpi"), dict):
        data = data["kpi"]
    unknown = sorted(set(data) - FIELD_NAMES)
    if unknown:
        raise ConfigError(f"config file {path}: unknown settings {', '.join(unknown)}")
    return data


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings named KPI_<FIELD> in the environment (KPI_STATE_DIR, KPI_FSYNC, ...)."""
    out: dict[str, Any] = {}
    for name in FIELD_NAMES - {"stale_s"}:
        key = "KPI_" + name.upper()
        if key in environ and environ[key] != "":
            out[name] = environ[key]
    return out


def resolve(
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge CLI values (None = not given) over KPI_* env over the TOML file over defaults."""
    cli = {k: v for k, v in (cli or {}).items() if v is not None and k in FIELD_NAMES}
    env = from_env(os.environ if environ is None else environ)
    config_file = cli.get("config_file") or env.get("config_file")
    layers: list[Mapping[str, Any]] = []
    if config_file:
        layers.append(load_toml(Path(os.path.expanduser(str(config_file)))))
    layers.extend([env, cli])
    merged: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            merged[name] = _coerce(name, value)
    if merged.get("log_format", "auto") not in {"auto", "json", "console"}:
        raise ConfigError("log_format must be auto, json or console")
    merged.setdefault("state_dir", Path("logs/state").absolute())
    return Settings(**merged)
