"""Whisper large-v3-turbo and distil-large-v3 in the manifest: their hub pulls against a local hub
cache (no download, no real weights: stand-in files of the pinned sizes), the pinned revision,
the size and sha256 pins, the record-at-first-pull for unpinned files, and the GPU budget and
compute type each brings to the scheduler and the engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.engines.families import family
from gateway.registry.manifest import ModelSpec, load_manifest
from gateway.registry.store import ModelError, ModelStore

MANIFEST = load_manifest()
TURBO = MANIFEST["whisper-large-v3-turbo"]
DISTIL = MANIFEST["whisper-distil-large-v3"]
NAMES = ("model.bin", "config.json", "preprocessor_config.json", "tokenizer.json",
         "vocabulary.json")  # fmt: skip
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def _snapshot(cache: Path, repo: str, commit: str, files: dict[str, bytes]) -> Path:
    """One commit of a repository in huggingface_hub's cache layout."""
    snap = cache / ("models--" + repo.replace("/", "--")) / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    return snap


def _main(cache: Path, repo: str, commit: str) -> None:
    refs = cache / ("models--" + repo.replace("/", "--")) / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(commit)


def _stand_ins(spec: ModelSpec, fill: bytes = b"r") -> dict[str, bytes]:
    """Files of each pinned size (8 bytes where none is pinned)."""
    return {f.name: fill * (f.size if f.size and f.size < 10_000_000 else 8) for f in spec.files}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


def _unpin_model_bin(spec: ModelSpec) -> dict[str, ModelSpec]:
    """The spec as stand-in files can meet it: model.bin's pins removed (its 1.6 GB cannot be
    stood in for), and the other files' sha256 (stand-ins cannot have the real bytes); their
    pinned sizes are kept."""
    files = tuple(
        dataclasses.replace(f, sha256=None, size=None if f.name == "model.bin" else f.size)
        for f in spec.files
    )
    return {spec.id: dataclasses.replace(spec, files=files, pins={f.name: f for f in files})}


def test_manifest_pins_turbo_to_a_revision_and_lists_the_mel_config() -> None:
    (source,) = TURBO.sources
    assert source.kind == "huggingface" and source.revision
    assert len(source.revision) == 40 and int(source.revision, 16) >= 0
    for spec in (TURBO, DISTIL):
        assert set(spec.pins) == set(NAMES)  # preprocessor_config.json: 128 mel bins
        assert spec.gpu_compute_type == "int8_float16" and spec.gpu_budget_mib
        assert spec.multilingual and not spec.default
    assert all(TURBO.pins[name].sha256 and TURBO.pins[name].size for name in NAMES)


def test_turbo_pull_fetches_the_pinned_revision_not_main(tmp_path: Path, hub: Path) -> None:
    (source,) = TURBO.sources
    assert source.repo and source.revision
    pinned = _snapshot(hub, source.repo, source.revision, _stand_ins(TURBO, b"p"))
    _snapshot(hub, source.repo, OTHER_COMMIT, _stand_ins(TURBO, b"m"))
    _main(hub, source.repo, OTHER_COMMIT)  # main has moved on since the pin
    store = ModelStore(tmp_path / "models", _unpin_model_bin(TURBO))
    folder = store.pull(TURBO.id, allow_download=True)
    for name in NAMES:
        assert (folder / name).read_bytes() == (pinned / name).read_bytes(), name
    status = store.status(TURBO.id)
    assert status.present and status.source == f"huggingface:{source.repo}@{source.revision[:12]}"
    assert store.verify(TURBO.id) == []
    # each unpinned file's sha256 was recorded at the pull: a changed byte is found afterwards
    config = folder / "config.json"
    data = bytearray(config.read_bytes())
    data[0] ^= 0xFF
    config.write_bytes(bytes(data))
    assert any(p.startswith("config.json: sha256") for p in store.verify(TURBO.id))


def test_turbo_pull_refuses_a_model_bin_that_is_not_the_pinned_one(
    tmp_path: Path, hub: Path
) -> None:
    (source,) = TURBO.sources
    assert source.repo and source.revision
    _snapshot(hub, source.repo, source.revision, _stand_ins(TURBO))
    store = ModelStore(tmp_path / "models", MANIFEST)
    with pytest.raises(ModelError, match="model.bin assembled to sha256 .*manifest pins e76620f8"):
        store.pull(TURBO.id, allow_download=True)
    assert not store.status(TURBO.id).present


def test_turbo_pull_refuses_a_file_of_another_size(tmp_path: Path, hub: Path) -> None:
    (source,) = TURBO.sources
    assert source.repo and source.revision
    files = _stand_ins(TURBO)
    files["preprocessor_config.json"] += b"\n"
    _snapshot(hub, source.repo, source.revision, files)
    store = ModelStore(tmp_path / "models", _unpin_model_bin(TURBO))
    with pytest.raises(
        ModelError, match="preprocessor_config.json has 341 bytes, manifest pins 340"
    ):
        store.pull(TURBO.id, allow_download=True)


def test_turbo_without_the_revision_cached_fails_clearly(tmp_path: Path, hub: Path) -> None:
    (source,) = TURBO.sources
    assert source.repo
    _snapshot(hub, source.repo, OTHER_COMMIT, _stand_ins(TURBO))
    _main(hub, source.repo, OTHER_COMMIT)
    store = ModelStore(tmp_path / "models", _unpin_model_bin(TURBO))
    with pytest.raises(ModelError, match=f"cannot pull '{TURBO.id}'"):
        store.pull(TURBO.id, allow_download=True)


def test_distil_records_each_file_at_the_first_pull_and_verifies_against_it(
    tmp_path: Path, hub: Path
) -> None:
    (source,) = DISTIL.sources
    assert source.repo and source.revision is None
    _snapshot(hub, source.repo, OTHER_COMMIT, _stand_ins(DISTIL))
    _main(hub, source.repo, OTHER_COMMIT)
    store = ModelStore(tmp_path / "models", MANIFEST)
    offline = ModelStore(tmp_path / "offline", MANIFEST)
    with pytest.raises(ModelError, match="pass --allow-download"):
        offline.pull(DISTIL.id)  # online only: nothing is fetched without the flag
    folder = store.pull(DISTIL.id, allow_download=True)
    assert store.verify(DISTIL.id) == []
    (folder / "model.bin").write_bytes(b"x" * 8)  # same size, other bytes
    assert any(p.startswith("model.bin: sha256") for p in store.verify(DISTIL.id))


def test_each_large_whisper_brings_its_gpu_budget_and_compute_type(tmp_path: Path) -> None:
    from gateway.runtime import ALIASES, Runtime

    settings = Settings()
    settings.models.dir = tmp_path  # nothing pulled: no engine is built, nothing loads
    gw = Runtime(settings)
    assert ALIASES["transcription"]["turbo"] == TURBO.id
    assert ALIASES["transcription"]["distil-large-v3"] == DISTIL.id
    for spec in (TURBO, DISTIL):
        assert spec.gpu_budget_mib and spec.gpu_budget_mib > settings.whisper.gpu_budget_mib
        assert gw._policy(spec).gpu_budget_mib == spec.gpu_budget_mib
    base = MANIFEST["whisper-base"]
    assert gw._policy(base).gpu_budget_mib == settings.whisper.gpu_budget_mib
    settings.whisper.gpu_compute_type = "float16"  # the section's, for models naming none
    (tmp_path / TURBO.id).mkdir()
    (tmp_path / TURBO.id / "model.bin").write_bytes(b"")  # the engine loads nothing until used
    engine = family("whisper").factory(TURBO, tmp_path / TURBO.id, settings, {})
    assert engine.variants()["gpu"] == "model.bin (int8_float16)"
    engine = family("whisper").factory(base, tmp_path / TURBO.id, settings, {})
    assert engine.variants()["gpu"] == "model.bin (float16)"
