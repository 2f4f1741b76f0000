"""Input sources: where each lives, how its bytes become JSON, and the last good copy.

A `SourceReader` is the only stateful piece between the filesystem and the pure pipeline:
it re-parses a file only when its stamp changed, and keeps the last good content of every
source so that a torn or malformed file never blanks good data (docs/CONTRACT_RULES.md, rule 7).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import accumulate
from operator import getitem
from pathlib import Path
from typing import Any, TypeVar

import orjson

from kpi_publisher import fs
from kpi_publisher.config import Settings
from kpi_publisher.contract import INVALID, MISSING, OK, SOURCE_NAMES, SourceRead

STATE_FILES: Mapping[str, tuple[str, ...]] = {
    "nav_state": ("nav_state.json",),
    "nav": ("nav.json",),
    "risk": ("risk_snapshot.json",),
    "router": ("router_health.json",),
    "positions": ("positions_state.json", "positions.json"),
    "risk_advanced": ("risk_advanced.json",),  # VaR/CVaR, written from v7.6 on
}


def source_paths(settings: Settings) -> dict[str, tuple[Path, ...]]:
    """Candidate paths per source, in preference order."""
    paths: dict[str, tuple[Path, ...]] = {
        name: tuple(settings.state_dir / f for f in files) for name, files in STATE_FILES.items()
    }
    paths["fx"] = (settings.resolved_fx_path,)
    paths["holdings"] = (settings.resolved_holdings_path,)
    return paths


# The deepest nesting a file may have (a top-level object is depth 1). Real files are under 10
# levels deep; anything deeper is invalid (docs/CONTRACT_RULES.md, rule 6) on every decode
# path, before any code could recurse into it.
MAX_DEPTH = 64
DROPPED_SHOWN = 20  # key paths kept per source for the log and the sources block


@dataclass(frozen=True)
class Decoded:
    """A decoded document and the key paths of values dropped as invalid Unicode."""

    value: Any
    dropped: tuple[str, ...] = ()
    dropped_count: int = 0
    # The JSON encodings of the top-level values shared with the previous decode, kept for the
    # next decode's `share_unchanged`.
    parts: Mapping[str, bytes] = field(default_factory=dict)


def _orjson_depth_limit(ceiling: int = 4096) -> int | None:
    """The deepest nesting orjson.loads accepts (1024 in orjson 3.x), found once at import.

    None when it has no limit below `ceiling`, or arrays and objects count differently: the
    decoder then checks the depth with an iterative walk instead.
    """

    def accepts(depth: int, opener: bytes, leaf: bytes, closer: bytes) -> bool:
        try:
            orjson.loads(opener * depth + leaf + closer * depth)
        except orjson.JSONDecodeError:
            return False
        return True

    def arrays(depth: int) -> bool:
        return accepts(depth, b"[", b"", b"]")

    if not arrays(MAX_DEPTH) or arrays(ceiling):
        return None
    low, high = MAX_DEPTH, ceiling  # arrays(low) and not arrays(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if arrays(middle) else (low, middle)
    objects_agree = accepts(low, b'{"k":', b"0", b"}") and not accepts(
        low + 1, b'{"k":', b"0", b"}"
    )
    return low if objects_agree else None


# orjson refuses nesting deeper than its limit. Parsing a large file wrapped in
# (limit - MAX_DEPTH) one-element lists makes that same C check enforce MAX_DEPTH, for a copy
# and the padding (~80 µs), where walking a large document in Python would cost most of what
# parsing it costs. A file up to PAD_FROM_BYTES is walked instead (a few µs for a state file).
PAD_FROM_BYTES = 64 * 1024
_ORJSON_LIMIT = _orjson_depth_limit()
_PAD = _ORJSON_LIMIT - MAX_DEPTH if _ORJSON_LIMIT is not None else 0
_PAD_OPEN, _PAD_CLOSE = b"[" * _PAD, b"]" * _PAD
_PAD_INDEXES = (0,) * _PAD
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
_ABSENT = object()


def _nan_to_none(_: str) -> None:
    return None


def _integer(digits: str) -> int | None:
    """A JSON integer; None (missing, as any number beyond the float range reads) when it is
    too long for int() (over sys.get_int_max_str_digits(), 4,300 digits by default), which
    would otherwise make the whole file unreadable."""
    try:
        return int(digits)
    except ValueError:
        return None


def _valid_text(text: str) -> bool:
    """True unless `text` holds a lone surrogate (a JSON escape such as "\\udcff")."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _trail_text(trail: tuple[Any, ...] | None, last: Any) -> str:
    """A key path for logs: `a.b[3].c`; keys that are not valid Unicode are escaped."""
    parts: list[Any] = [last]
    while trail is not None:
        trail, key = trail
        parts.append(key)
    out = ""
    for key in reversed(parts):
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            shown = key.encode("utf-8", "backslashreplace").decode("utf-8")
            shown = shown if len(shown) <= 64 else shown[:61] + "..."
            out += f".{shown}" if out else shown
    return out


def _scrub(value: Any) -> Decoded:
    """Make a stdlib-decoded document safe, in place and without recursion.

    Float NaN/Infinity (an overflowing literal such as 1e400) becomes None; a string that is
    not valid Unicode becomes None, and an object entry whose key is one is dropped, each
    recorded by key path. Nesting deeper than MAX_DEPTH raises fs.ReadError.
    """
    dropped: list[str] = []
    count = 0
    # Each entry: a container, its depth, and its key path as a linked (parent, key) pair.
    stack: list[tuple[Any, int, tuple[Any, ...] | None]] = []
    if type(value) is dict or type(value) is list:
        stack.append((value, 1, None))
    while stack:
        node, depth, trail = stack.pop()
        if depth > MAX_DEPTH:
            raise fs.ReadError(TOO_DEEP)
        if type(node) is dict:
            items: Any = list(node.items())
        else:
            items = enumerate(node)
        for key, item in items:
            if type(key) is str and not _valid_text(key):
                del node[key]
            else:
                kind = type(item)
                if kind is str:
                    if _valid_text(item):
                        continue
                    node[key] = None
                elif kind is float:
                    if not math.isfinite(item):
                        node[key] = None
                    continue
                elif kind is dict or kind is list:
                    stack.append((item, depth + 1, (trail, key)))
                    continue
                else:
                    continue
            count += 1
            if len(dropped) < DROPPED_SHOWN:
                dropped.append(_trail_text(trail, key))
    return Decoded(value, tuple(dropped), count)


def _too_deep(values: Iterable[Any], depth: int = 1) -> bool:
    """True when containers among `values` (which sit at `depth`; the top level is 1) nest
    deeper than MAX_DEPTH (iterative, level by level)."""
    level = [value for value in values if type(value) is dict or type(value) is list]
    for _ in range(depth, MAX_DEPTH + 1):
        below = []
        for node in level:
            for item in node.values() if type(node) is dict else node:
                if type(item) is dict or type(item) is list:
                    below.append(item)
        if not below:
            return False
        level = below
    return True


def too_deep(doc: Any) -> bool:
    """True when `doc` nests deeper than MAX_DEPTH levels (the top level is 1)."""
    return _too_deep([doc])


def _unpad(padded: Any) -> tuple[bool, Any]:
    """(True, the document) when `padded` is exactly the padding around one JSON value.

    Every padding level is a list (the first _PAD bytes are its openers). The bytes were one
    JSON value exactly when each padding list holds one element: a closing bracket in the file
    that ended a padding list early would have left a second element beside it. The walk runs
    in C (accumulate, map): a Python loop over 960 levels costs more than parsing a small file.
    """
    try:
        chain = list(accumulate(_PAD_INDEXES, getitem, initial=padded))
    except IndexError:  # the file began with a closing bracket: an empty padding list
        return False, None
    if max(map(len, chain[:-1])) != 1:
        return False, None
    return True, chain[-1]


def _orjson_reason(raw: bytes, fallback: Exception) -> str:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return str(exc)
    return str(fallback)


def decode_doc(raw: bytes, *, allow_list: bool = False, like: Decoded | None = None) -> Decoded:
    """Bytes -> JSON value; raises fs.ReadError with the reason when the file is unusable.

    NaN/Infinity tokens (stdlib json writes them by default) read as null; the file stays valid.
    A string that is not valid Unicode (a lone surrogate escape such as "\\udcff", which
    orjson refuses and the stdlib accepts) reads as null, and an object entry whose key is one
    is dropped; the file stays valid and `Decoded.dropped` names the key paths. Bytes that are
    not UTF-8 and nesting deeper than MAX_DEPTH make the file invalid (docs/CONTRACT_RULES.md,
    rule 6). `like`, the file's previous decode, lends its objects to unchanged top-level
    values (`share_unchanged`).
    """
    if not raw.strip():
        raise fs.ReadError("empty file")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise fs.ReadError("starts with a UTF-8 byte-order mark")
    decoded: Decoded | None = None
    depth_checked = True
    try:
        if _PAD and len(raw) > PAD_FROM_BYTES:
            whole, value = _unpad(orjson.loads(b"".join((_PAD_OPEN, raw, _PAD_CLOSE))))
            if whole:
                decoded = Decoded(value)
        else:
            decoded, depth_checked = Decoded(orjson.loads(raw)), False
    except orjson.JSONDecodeError:
        pass
    if decoded is None:
        # NaN tokens, lone surrogates, too deep, or not JSON at all: the stdlib decides.
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise fs.ReadError(f"not UTF-8 (byte {exc.start})") from exc
        try:
            value = json.loads(text, parse_constant=_nan_to_none, parse_int=_integer)
        except RecursionError:
            raise fs.ReadError(TOO_DEEP) from None
        except ValueError as exc:
            raise fs.ReadError(f"not valid JSON: {_orjson_reason(raw, exc)}") from None
        decoded = _scrub(value)
    value = decoded.value
    usable = isinstance(value, dict) or (allow_list and isinstance(value, list))
    parts, fresh = share_unchanged(value, like) if usable else ({}, [value])
    # Shared values were checked when first read: only new objects are walked.
    if not depth_checked and _too_deep(fresh, 2 if type(value) is dict else 1):
        raise fs.ReadError(TOO_DEEP)
    if usable:
        return Decoded(value, decoded.dropped, decoded.dropped_count, parts)
    expected = "an object or a list" if allow_list else "an object"
    raise fs.ReadError(f"top level is {type(value).__name__}, expected {expected}")


def _encoded(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # beyond 64 bits or 255 levels
        return None


def share_unchanged(new: Any, like: Decoded | None) -> tuple[dict[str, bytes], list[Any]]:
    """Hand the object `new` the very objects of `like` (the previous decode) for each
    top-level value that is the same JSON. Returns the encodings of the values shared, for
    the next call, and the values that are new objects (`[new]` itself when it is a list).

    A stage is re-run only when an input object changes (`pipeline.Incremental`), so a new
    risk snapshot that differs in its fee block does not rebuild the symbols and the router.
    `==` finds the candidates (in C, and a changed block, such as the executor's restamped
    per-symbol entries, usually differs at its first entry); the bytes decide, because `==`
    holds 1 == 1.0 == True and 0.0 == -0.0: equal bytes are the same JSON, so every stage
    gives the same result for the old object as for the new.
    """
    parts: dict[str, bytes] = {}
    if type(new) is not dict:
        return parts, [new]
    old = like.value if like is not None and type(like.value) is dict else {}
    old_parts = like.parts if like is not None else {}
    fresh: list[Any] = []
    for key, value in new.items():
        before = old.get(key, _ABSENT)
        try:
            candidate = before is not _ABSENT and before == value
        except RecursionError:  # nested past the interpreter's limit: judged below, as new
            candidate = False
        if candidate:
            encoded = _encoded(value)
            if encoded is not None and encoded == (old_parts.get(key) or _encoded(before)):
                new[key] = before
                parts[key] = encoded
                continue
        fresh.append(value)
    return parts, fresh


def decode(raw: bytes, *, allow_list: bool = False) -> Any:
    """The decoded value alone (see `decode_doc`)."""
    return decode_doc(raw, allow_list=allow_list).value


_K = TypeVar("_K")
_V = TypeVar("_V")


def _carry(source: Mapping[_K, _V], target: dict[_K, _V], keys: Iterable[_K]) -> None:
    """Copy the entries of `keys` that `source` has into `target`."""
    target.update((key, source[key]) for key in keys if key in source)


@dataclass(frozen=True)
class Refresh:
    """Every source as it stands, and which of them changed since the previous refresh."""

    sources: dict[str, SourceRead]
    # Anything a reader of the outputs could see: status, file, stamp, error or a new parse.
    changed: frozenset[str]
    # New content: a new parse, another file, or the file appearing or disappearing.
    content_changed: frozenset[str]


class SourceReader:
    """Reads every source, re-parsing only files whose stamp changed, keeping last good data.

    It is the one judge of "did this source change": `refresh` reports the changed sources,
    and `unread_changes` (the watcher's rescan) names the files changed since it read them.
    """

    def __init__(self, settings: Settings, *, share: bool = True) -> None:
        """`share=False` decodes every file from scratch (`share_unchanged` off): the
        reference reader of the tests that prove sharing changes nothing."""
        self._share = share
        self._paths = source_paths(settings)
        self._max_bytes = settings.max_input_bytes
        self._root = settings.state_dir
        self._last: dict[Path, SourceRead] = {}
        self._good: dict[str, SourceRead] = {}
        self._versions = itertools.count(1)
        self._digests: dict[Path, int] = {}
        self._decoded: dict[Path, Decoded] = {}  # per file, its last good decode
        self._verify: set[Path] = set()
        self._seen = fs.StampLedger()  # the stamp of every file as this reader last saw it
        self._reported: dict[str, tuple[Any, ...]] = {}
        self._content: dict[str, tuple[Any, ...]] = {}
        self._current: dict[str, SourceRead] = {}  # what `read` last returned, per source
        self._owners: dict[Path, set[str]] = {}  # the sources each candidate path belongs to
        # A file directly in the state dir is read beneath it (`fs.read_bytes`' root).
        self._roots: dict[Path, Path] = {}
        for name, candidates in self._paths.items():
            for path in candidates:
                self._owners.setdefault(path, set()).add(name)
                if path.parent == self._root:
                    self._roots[path] = self._root

    @property
    def paths(self) -> Mapping[str, tuple[Path, ...]]:
        return self._paths

    def reconfigured(self, settings: Settings) -> SourceReader:
        """A reader for `settings` that keeps what this one knows of every source still read
        from the same files (the same candidate paths, each read beneath the same root): its
        last good content, its parses and its stamps, so a reload never blanks a source it did
        not move. A source with another path starts afresh. A new size cap re-reads the kept
        files on the next read (unchanged bytes keep their parse; a file now over the cap is
        `invalid` with its last good content). This reader is left as it was."""
        new = SourceReader(settings, share=self._share)
        new._versions = self._versions  # a version stays unique across the two readers
        kept = [name for name in new._paths if self._same_files(new, name)]
        paths = {path for name in kept for path in new._paths[name]}
        _carry(self._good, new._good, kept)
        _carry(self._current, new._current, kept)
        _carry(self._reported, new._reported, kept)
        _carry(self._content, new._content, kept)
        _carry(self._last, new._last, paths)
        _carry(self._digests, new._digests, paths)
        _carry(self._decoded, new._decoded, paths)
        new._verify = self._verify & paths
        if new._max_bytes != self._max_bytes:
            new._verify |= paths
        return new

    def _same_files(self, new: SourceReader, name: str) -> bool:
        """True when `new` reads source `name` exactly as this reader does."""
        candidates = new._paths[name]
        return self._paths.get(name) == candidates and all(
            self._roots.get(path) == new._roots.get(path)
            and self._owners.get(path) == new._owners[path]
            for path in candidates
        )

    def _read_file(self, name: str, path: Path) -> SourceRead:
        cached = self._last.get(path)
        verify = path in self._verify
        self._verify.discard(path)
        if not verify:  # a file with an event is read whatever its stamp says
            current = fs.stamp(path)
            self._seen.see(path, current)
            if cached is not None and current is not None and cached.stamp == current:
                return cached
        try:
            raw, file_stamp = fs.read_bytes(
                path, max_bytes=self._max_bytes, root=self._roots.get(path)
            )
            self._seen.see(path, file_stamp)
            digest = hash(raw)
            if cached is not None and cached.stamp == file_stamp and self._digests[path] == digest:
                return cached  # an event, but the same bytes: nothing new to parse or publish
            decoded = decode_doc(
                raw,
                allow_list=(name == "positions"),
                like=self._decoded.get(path) if self._share else None,
            )
        except FileNotFoundError:
            result = SourceRead(name, MISSING, path=path)
        except fs.ReadError as exc:
            result = SourceRead(name, INVALID, error=f"{path.name}: {exc.reason}", path=path)
        except OSError as exc:
            result = SourceRead(
                name, INVALID, error=f"{path.name}: {exc.strerror or exc}", path=path
            )
        else:
            result = SourceRead(
                name,
                OK,
                data=decoded.value,
                path=path,
                stamp=file_stamp,
                version=next(self._versions),
                dropped=decoded.dropped,
                dropped_count=decoded.dropped_count,
            )
            self._digests[path] = digest
            self._decoded[path] = decoded
        if verify and result.status != OK:  # the stamp it failed at, as the stat would have seen
            self._seen.see(path, fs.stamp(path))
        # Invalid reads are not cached by stamp: a torn in-place write is retried next pass.
        if result.status == OK:
            self._last[path] = result
        else:
            self._last.pop(path, None)
        return result

    def read(self, name: str) -> SourceRead:
        """The source as it stands now; an invalid file yields the last good content, if any.

        Later candidates (positions.json after positions_state.json) are tried only while no
        earlier one gave data and there is no last good content (docs/CONTRACT_RULES.md, rule 7).
        """
        self._current[name] = read = self._read_candidates(name)
        return read

    def _read_candidates(self, name: str) -> SourceRead:
        failures: list[SourceRead] = []
        candidates = self._paths[name]
        for index, path in enumerate(candidates):
            result = self._read_file(name, path)
            # A later candidate not consulted now cannot change what is published.
            self._seen.forget(candidates[index + 1 :])
            if result.status == OK:
                self._good[name] = result
                broken = [f.error for f in failures if f.status == INVALID]
                if broken:
                    # The fallback's data is good, but the operator must see the primary is not.
                    return replace(result, error=f"{broken[0]}; using {path.name}")
                return result
            good = self._good.get(name)
            if result.status == INVALID and good is not None:
                return replace(good, status=INVALID, error=result.error)
            failures.append(result)
        invalid = [r for r in failures if r.status == INVALID]
        return invalid[0] if invalid else failures[0]

    def invalidate(self, paths: Iterable[Path]) -> None:
        """Re-read `paths` on the next read even if their stamp looks unchanged (an in-place
        rewrite of the same size within one mtime tick); unchanged bytes keep the old parse."""
        self._verify.update(paths)

    def read_all(self) -> dict[str, SourceRead]:
        return {name: self.read(name) for name in SOURCE_NAMES}

    def refresh(self, events: Iterable[Path] = ()) -> Refresh:
        """Every source as it stands, and which changed since the previous refresh.

        `events` had file-system events: they are re-read even when their stamp looks unchanged,
        and only the sources they belong to are read at all; the others stand as the previous
        read left them (an event the watcher missed is named by its rescan, `unread_changes`).
        With no events (start, heartbeat, retry, reload), or an event on a file that is no
        source's, every source is looked at: a stat each, a read only where the stamp moved.
        """
        touched = set(events)
        owned = touched & self._owners.keys()
        self.invalidate(owned)
        names: set[str] | None = None
        if touched and owned == touched:
            names = set().union(*(self._owners[path] for path in owned))
        sources = {
            name: self.read(name)
            if names is None or name in names or name not in self._current
            else self._current[name]
            for name in SOURCE_NAMES
        }
        changed: set[str] = set()
        content_changed: set[str] = set()
        for name, read in sources.items():
            reported = (read.status, read.path, read.stamp, read.error, read.version)
            if reported != self._reported.get(name):
                self._reported[name] = reported
                changed.add(name)
            content = (read.status == MISSING, read.path, read.version)
            if content != self._content.get(name):
                self._content[name] = content
                content_changed.add(name)
        return Refresh(sources, frozenset(changed), frozenset(content_changed))

    def unread_changes(self) -> set[Path]:
        """Files this reader consulted whose stamp changed since it read them (events the
        watcher may have missed); a file it never needed is not its concern."""
        return self._seen.moved()
