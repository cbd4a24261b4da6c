"""On-disk cache of TensorRT plans, keyed by everything that makes a plan valid.

A plan is machine code for one TensorRT version on one GPU, built from one exact ONNX
file with one set of options. It is stored under a key that names all of these; its JSON
sidecar repeats the key and the plan's sha256, and both are checked before the bytes are
handed to TensorRT (a plan is never trusted by its file name). Writes are atomic
(temporary file, fsync, os.replace) and happen under an exclusive flock, so two nodes
starting together build a plan once and never read a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from perception.inference.errors import EngineError

SIDECAR_FORMAT = 1
PLAN_SUFFIX = ".plan"
SIDECAR_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"
FAILURE_SUFFIX = ".failure"  # JSON: why the last background build of this key failed


class PlanCacheError(EngineError):
    """The plan cache cannot be read or written."""


class CorruptPlanError(PlanCacheError):
    """A cached plan whose bytes or sidecar do not match what was asked for."""


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/perception/engines, or ~/.cache/perception/engines."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "perception" / "engines"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class PlanKey:
    """Everything a plan depends on. Two keys are equal exactly when one plan serves both."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor"
    precision: str
    shapes: tuple[tuple[str, tuple[int, ...]], ...]  # input name -> fixed shape, sorted by name
    builder_options: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs

    @classmethod
    def create(cls, onnx_sha256: str, tensorrt_version: str, gpu_name: str, compute_capability: str,
               precision: str, shapes: Mapping[str, tuple[int, ...]],
               builder_options: Mapping[str, object] | None = None) -> PlanKey:
        """Normalizes the order of shapes and options so equal settings give equal keys."""
        return cls(
            onnx_sha256=onnx_sha256,
            tensorrt_version=tensorrt_version,
            gpu_name=gpu_name,
            compute_capability=compute_capability,
            precision=precision,
            shapes=tuple(sorted((name, tuple(int(d) for d in dims)) for name, dims in shapes.items())),
            builder_options=tuple(sorted((k, str(v)) for k, v in (builder_options or {}).items())),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shapes"] = {name: list(dims) for name, dims in self.shapes}
        data["builder_options"] = dict(self.builder_options)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanKey:
        return cls.create(
            onnx_sha256=str(data["onnx_sha256"]),
            tensorrt_version=str(data["tensorrt_version"]),
            gpu_name=str(data["gpu_name"]),
            compute_capability=str(data["compute_capability"]),
            precision=str(data["precision"]),
            shapes={str(k): tuple(v) for k, v in dict(data["shapes"]).items()},
            builder_options=dict(data.get("builder_options", {})),
        )

    def digest(self) -> str:
        """sha256 of the canonical JSON of the key: the cache file's name."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One plan in the cache as `perception engines list` shows it."""

    digest: str
    plan_path: Path
    key: PlanKey | None
    plan_bytes: int
    created: str
    source: str
    problem: str  # empty when the plan's hash matches its sidecar


@dataclass(frozen=True)
class CachedPlan:
    plan: bytes
    path: Path
    status: str  # "hit", "built" or "rebuilt"


@dataclass(frozen=True)
class BuildFailure:
    """Why a plan could not be built or was refused; kept so the next start does not repeat it.

    limits: the bounds the build ran under (timeout, memory); a build with higher ones is retried.
    """

    cause: str
    fix: str
    limits: dict[str, float]
    when: str

    def retry_allowed(self, limits: Mapping[str, float]) -> bool:
        """True when a bound that was hit is now higher (0 means unbounded)."""
        def looser(new: float, old: float) -> bool:
            return (new == 0 and old != 0) or (old != 0 and new > old)

        return any(looser(float(limits.get(name, 0)), float(old)) for name, old in self.limits.items())


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target.

    Readers see either the old file or the complete new one, also after a power cut.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Exclusive advisory lock (fcntl.flock) held for the body; released on exit or process death."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if timeout_s is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise PlanCacheError(
                            f"another process holds the plan lock {path} for more than {timeout_s:.0f} s",
                            "wait for the other build to finish, or stop that process") from None
                    time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


class PlanCache:
    """Plans under root/<key digest>.plan with root/<key digest>.json sidecars."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def plan_path(self, key: PlanKey) -> Path:
        return self.root / f"{key.digest()}{PLAN_SUFFIX}"

    def _sidecar(self, plan_path: Path) -> Path:
        return plan_path.with_suffix(SIDECAR_SUFFIX)

    def _lock(self, plan_path: Path) -> Path:
        return plan_path.with_suffix(LOCK_SUFFIX)

    def load(self, key: PlanKey) -> bytes | None:
        """The verified plan for key, None if there is none, CorruptPlanError if it cannot be trusted."""
        path = self.plan_path(key)
        sidecar_path = self._sidecar(path)
        if not path.exists() and not sidecar_path.exists():
            return None
        fix = "run `perception engines clear` or let the engine rebuild it (the default)"
        if not sidecar_path.exists():
            raise CorruptPlanError(f"plan {path} has no sidecar {sidecar_path.name}, so it cannot be trusted", fix)
        if not path.exists():
            raise CorruptPlanError(f"sidecar {sidecar_path} has no plan next to it", fix)
        sidecar = self._read_sidecar(sidecar_path)
        try:
            stored_key = PlanKey.from_dict(sidecar["key"])
            expected_sha = str(sidecar["plan_sha256"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptPlanError(f"sidecar {sidecar_path} is incomplete ({exc})", fix) from exc
        if stored_key != key:
            raise CorruptPlanError(f"plan {path} was built for another key ({_key_difference(stored_key, key)})", fix)
        plan = path.read_bytes()
        actual_sha = hashlib.sha256(plan).hexdigest()
        if actual_sha != expected_sha:
            raise CorruptPlanError(f"plan {path} has sha256 {actual_sha[:12]}…, its sidecar says "
                                   f"{expected_sha[:12]}… (truncated, corrupted or replaced)", fix)
        return plan

    def store(self, key: PlanKey, plan: bytes, source: str = "") -> Path:
        """Write plan then sidecar, each atomically. Call under the key's lock (get_or_build does)."""
        if not plan:
            raise PlanCacheError("refusing to cache an empty plan", "the TensorRT build failed; see its log")
        path = self.plan_path(key)
        atomic_write(path, plan)
        sidecar = {
            "format": SIDECAR_FORMAT,
            "key": key.to_dict(),
            "key_digest": key.digest(),
            "plan_sha256": hashlib.sha256(plan).hexdigest(),
            "plan_bytes": len(plan),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source,
        }
        atomic_write(self._sidecar(path), json.dumps(sidecar, indent=2, sort_keys=True).encode())
        return path

    def get_or_build(self, key: PlanKey, build: Callable[[], bytes], *, rebuild_corrupt: bool = True,
                     source: str = "", lock_timeout_s: float | None = None) -> CachedPlan:
        """The cached plan, or build it once: a second process waits on the lock, then reads the result."""
        path = self.plan_path(key)
        with file_lock(self._lock(path), lock_timeout_s):
            status = "built"
            try:
                plan = self.load(key)
            except CorruptPlanError:
                if not rebuild_corrupt:
                    raise
                self._remove(path)
                plan, status = None, "rebuilt"
            if plan is not None:
                return CachedPlan(plan, path, "hit")
            plan = build()
            self.store(key, plan, source)
            return CachedPlan(plan, path, status)

    def _failure_path(self, key: PlanKey) -> Path:
        return self.root / f"{key.digest()}{FAILURE_SUFFIX}"

    def record_failure(self, key: PlanKey, cause: str, fix: str, limits: Mapping[str, float]) -> Path:
        """Remember that building (or trusting) key's plan failed, and under which limits."""
        path = self._failure_path(key)
        record = {"format": SIDECAR_FORMAT, "key": key.to_dict(), "cause": cause, "fix": fix,
                  "limits": dict(limits), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write(path, json.dumps(record, indent=2, sort_keys=True).encode())
        return path

    def failure(self, key: PlanKey) -> BuildFailure | None:
        """The recorded failure of exactly this key (an unreadable or foreign record counts as none)."""
        record = _read_failure(self._failure_path(key))
        return record[1] if record is not None and record[0] == key else None

    def recorded_failures(self) -> list[tuple[str, BuildFailure | None]]:
        """(key digest, failure or None when unreadable) for every failure record."""
        out: list[tuple[str, BuildFailure | None]] = []
        for path in self.failures():
            record = _read_failure(path)
            out.append((path.stem, record[1] if record else None))
        return out

    def forget_failure(self, key: PlanKey) -> None:
        self._failure_path(key).unlink(missing_ok=True)

    def failures(self) -> list[Path]:
        return sorted(self.root.glob(f"*{FAILURE_SUFFIX}")) if self.root.is_dir() else []

    def remove(self, key: PlanKey) -> None:
        """Drop key's plan and sidecar (a plan refused after it was built)."""
        path = self.plan_path(key)
        with file_lock(self._lock(path)):
            self._remove(path)

    def stale_for(self, key: PlanKey) -> list[str]:
        """How cached plans of the same ONNX, precision and shapes differ from key (another GPU, TensorRT...)."""
        out = []
        for entry in self.entries():
            k = entry.key
            if k is None or k == key or (k.onnx_sha256, k.precision, k.shapes) != (key.onnx_sha256, key.precision,
                                                                                     key.shapes):
                continue
            out.append(_key_difference(k, key))
        return out

    def entries(self) -> list[CacheEntry]:
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.glob(f"*{PLAN_SUFFIX}")):
            out.append(self._entry(path))
        return out

    def _entry(self, path: Path) -> CacheEntry:
        digest = path.stem
        size = path.stat().st_size
        sidecar_path = self._sidecar(path)
        if not sidecar_path.exists():
            return CacheEntry(digest, path, None, size, "", "", "no sidecar")
        try:
            sidecar = self._read_sidecar(sidecar_path)
            key = PlanKey.from_dict(sidecar["key"])
        except (CorruptPlanError, KeyError, TypeError, ValueError) as exc:
            return CacheEntry(digest, path, None, size, "", "", f"bad sidecar ({exc})")
        problem = ""
        if key.digest() != digest:
            problem = "file name does not match its key"
        elif sha256_file(path) != sidecar.get("plan_sha256"):
            problem = "plan hash does not match its sidecar"
        return CacheEntry(digest, path, key, size, str(sidecar.get("created", "")),
                          str(sidecar.get("source", "")), problem)

    def clear(self) -> int:
        """Remove every plan and failure record (waiting for builds in progress); returns how many plans."""
        if not self.root.is_dir():
            return 0
        removed = 0
        stems = {p.stem for p in self.root.iterdir() if p.suffix in (PLAN_SUFFIX, SIDECAR_SUFFIX)}
        for stem in sorted(stems):
            path = self.root / f"{stem}{PLAN_SUFFIX}"
            with file_lock(self._lock(path)):
                removed += path.exists()
                self._remove(path)
            self._lock(path).unlink(missing_ok=True)
        for failure in self.failures():
            failure.unlink(missing_ok=True)
        return removed

    def prune(self, *, failures: bool = False, older_than_s: float | None = None) -> list[Path]:
        """Remove what cannot or need not be used: untrusted plans and sidecars without a plan,
        build logs, temporary files of dead writers; failure records if asked; plans not
        written for older_than_s. Returns the removed files."""
        if not self.root.is_dir():
            return []
        removed: list[Path] = []
        now = time.time()
        for entry in self.entries():
            old = older_than_s is not None and now - entry.plan_path.stat().st_mtime > older_than_s
            if entry.problem or entry.key is None or old:
                with file_lock(self._lock(entry.plan_path)):
                    removed += [p for p in (entry.plan_path, self._sidecar(entry.plan_path)) if p.exists()]
                    self._remove(entry.plan_path)
        for sidecar in self.root.glob(f"*{SIDECAR_SUFFIX}"):
            if not sidecar.with_suffix(PLAN_SUFFIX).exists():
                with file_lock(self._lock(sidecar.with_suffix(PLAN_SUFFIX))):
                    if not sidecar.with_suffix(PLAN_SUFFIX).exists() and sidecar.exists():
                        sidecar.unlink()
                        removed.append(sidecar)
        leftovers = [*self.root.glob("*.build.log"), *self.root.glob(".*.tmp"), *(self.failures() if failures else [])]
        for path in leftovers:
            if path.name.endswith(".tmp") and _writer_alive(path):
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._sidecar(path).unlink(missing_ok=True)

    @staticmethod
    def _read_sidecar(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptPlanError(f"sidecar {path} is not readable JSON ({exc})",
                                   "run `perception engines clear`") from exc
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise CorruptPlanError(f"sidecar {path} is not a format-{SIDECAR_FORMAT} plan sidecar",
                                   "run `perception engines clear`")
        return data


def _read_failure(path: Path) -> tuple[PlanKey, BuildFailure] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return PlanKey.from_dict(data["key"]), BuildFailure(
            str(data["cause"]), str(data["fix"]), {str(k): float(v) for k, v in dict(data["limits"]).items()},
            str(data["when"]))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def _writer_alive(tmp: Path) -> bool:
    """atomic_write names its temporary files .NAME.PID.tmp; one of a running process is in use."""
    try:
        pid = int(tmp.name.rsplit(".", 2)[-2])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _key_difference(stored: PlanKey, wanted: PlanKey) -> str:
    a, b = stored.to_dict(), wanted.to_dict()
    fields = [k for k in a if a[k] != b.get(k)]
    return ", ".join(f"{k}: {a[k]!r} != {b[k]!r}" for k in fields) or "unknown difference"
