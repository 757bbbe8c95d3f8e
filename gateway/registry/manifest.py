"""The model manifest: which models exist, their files, pinned checksums and sources."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

Task = Literal["speech", "transcription"]

# The manifest lives in the top-level `models/` folder of the repository; an installed wheel
# carries a copy inside the package so that `gateway` works outside a checkout too.
_REPO_MANIFEST = Path(__file__).resolve().parents[2] / "models" / "manifest.toml"


@dataclass(frozen=True)
class FileSpec:
    name: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Source:
    kind: Literal["pypi", "huggingface", "local"]
    files: dict[str, list[str]]
    repo: str | None = None
    path: Path | None = None
    checksum_file: str | None = None
    checksum_for: str | None = None
    # A hub repository's commit the files are fetched at (None: its main branch as it is then).
    revision: str | None = None

    def describe(self) -> str:
        if self.kind == "huggingface":
            at = f"@{self.revision[:12]}" if self.revision else ""
            return f"huggingface:{self.repo}{at}"
        if self.kind == "local":
            return f"local:{self.path}"
        return "pypi:" + ",".join(
            sorted({p.split("/")[0] for ps in self.files.values() for p in ps})
        )


@dataclass(frozen=True)
class VariantSpec:
    """Another file of a model for one lane (e.g. a float ONNX for the GPU beside the int8 one).

    It is derived offline from `source_file` and pinned by the sha256 of that derivation:
    `derive = "dequantize"` (registry/dequantize.py), `"timed"` (registry/timed.py: the phoneme
    durations as a second output) or `"fp16"` (registry/fp16.py: half precision). Variants are
    made in manifest order, so one may derive from another. A lane may have one variant per
    `precision` (the GPU lane: fp32 and fp16); the first listed is the lane's default. Where downloads are allowed, an upstream release (`upstream_*`) may be pulled
    instead; it is checked against its own pin, and with `upstream_timed` the durations output
    is added to it after that check (the result is then pinned by the hash recorded at pull)."""

    lane: Literal["gpu", "cpu"]
    name: str
    sha256: str | None = None
    size: int | None = None
    derive: Literal["dequantize", "timed", "fp16"] | None = None
    source_file: str | None = None
    precision: Literal["fp32", "fp16"] | None = None
    upstream_repo: str | None = None
    upstream_file: str | None = None
    upstream_sha256: str | None = None
    upstream_timed: bool = False


@dataclass(frozen=True)
class ModelSpec:
    id: str
    task: Task
    family: str
    description: str
    files: tuple[FileSpec, ...]
    sources: tuple[Source, ...]
    multilingual: bool = True
    default: bool = False
    pins: dict[str, FileSpec] = field(default_factory=dict)
    variants: tuple[VariantSpec, ...] = ()
    # What this model needs on the GPU where it differs from its family's settings (a large
    # Whisper needs more than the family's budget): MiB, and CTranslate2's compute type.
    gpu_budget_mib: int | None = None
    gpu_compute_type: str | None = None

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return sum(s for s in sizes if s) if all(sizes) else None


def _variant(raw: dict) -> VariantSpec:
    upstream = raw.get("upstream", {})
    return VariantSpec(
        lane=raw["lane"],
        name=raw["name"],
        sha256=raw.get("sha256"),
        size=raw.get("size"),
        derive=raw.get("derive"),
        source_file=raw.get("from"),
        precision=raw.get("precision"),
        upstream_repo=upstream.get("repo"),
        upstream_file=upstream.get("file"),
        upstream_sha256=upstream.get("sha256"),
        upstream_timed=upstream.get("timed", False),
    )


def _parse(data: dict) -> list[ModelSpec]:
    models: list[ModelSpec] = []
    for raw in data.get("model", []):
        files = tuple(FileSpec(f["name"], f.get("sha256"), f.get("size")) for f in raw["files"])
        sources = tuple(
            Source(
                kind=s["kind"],
                files={k: list(v) for k, v in s.get("files", {}).items()},
                repo=s.get("repo"),
                path=Path(s["path"]) if s.get("path") else None,
                checksum_file=s.get("checksum_file"),
                checksum_for=s.get("checksum_for"),
                revision=s.get("revision"),
            )
            for s in raw.get("sources", [])
        )
        models.append(
            ModelSpec(
                id=raw["id"],
                task=raw["task"],
                family=raw["family"],
                description=raw.get("description", ""),
                files=files,
                sources=sources,
                multilingual=raw.get("multilingual", True),
                default=raw.get("default", False),
                pins={f.name: f for f in files},
                variants=tuple(_variant(v) for v in raw.get("variants", [])),
                gpu_budget_mib=raw.get("gpu_budget_mib"),
                gpu_compute_type=raw.get("gpu_compute_type"),
            )
        )
    ids = [m.id for m in models]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate model ids in manifest: {ids}")
    return models


def load_manifest(path: Path | None = None) -> dict[str, ModelSpec]:
    if path is None:
        if _REPO_MANIFEST.exists():
            path = _REPO_MANIFEST
        else:
            text = resources.files("gateway").joinpath("manifest.toml").read_text("utf-8")
            return {m.id: m for m in _parse(tomllib.loads(text))}
    with open(path, "rb") as fh:
        return {m.id: m for m in _parse(tomllib.load(fh))}
