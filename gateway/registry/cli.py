"""`gateway models list | pull | verify`."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ..config import Settings
from .manifest import load_manifest
from .store import ModelError, ModelStore


def _store(settings: Settings) -> ModelStore:
    m = settings.models
    return ModelStore(m.dir, load_manifest(m.manifest), m.local_paths, m.allow_download)


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.0f} MB"


def run(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    cmd = args.models_command
    if cmd == "list":
        print(f"{'id':<18} {'task':<14} {'present':<8} {'size':>8}  source / description")
        for model_id, spec in store.specs.items():
            st = store.status(model_id)
            source = st.source or ", ".join(s.describe() for s in spec.sources)
            print(
                f"{model_id:<18} {spec.task:<14} {'yes' if st.present else 'no':<8} "
                f"{_size(st.size):>8}  {source}\n{'':<52}{spec.description}"
            )
        return 0
    if cmd == "pull":
        ids = args.ids or [m for m, s in store.specs.items() if s.default]
        failed = 0
        for model_id in ids:
            try:
                spec = store.spec(model_id)
                with tqdm(
                    total=spec.size,
                    unit="B",
                    unit_scale=True,
                    desc=model_id,
                    disable=not sys.stderr.isatty(),
                ) as bar:
                    folder = store.pull(
                        model_id,
                        allow_download=args.allow_download or None,
                        progress=lambda _n, k: bar.update(k),
                        force=args.force,
                    )
                print(f"{model_id}: ok ({folder})")
                problems = store.variant_problems.get(model_id)
                if problems is None:  # a local folder, which pull() leaves as it is
                    problems = store.pull_variants(model_id, bool(args.allow_download))
                for problem in problems:
                    print(
                        f"{model_id}: lane variant not made (that lane falls back): {problem}",
                        file=sys.stderr,
                    )
            except ModelError as exc:
                failed += 1
                print(f"{model_id}: FAILED: {exc}", file=sys.stderr)
        return 1 if failed else 0
    if cmd == "verify":
        # The default bundle, and whatever else was pulled (a folder exists for it).
        ids = args.ids or [
            m for m, spec in store.specs.items() if spec.default or store.folder(m).exists()
        ]
        bad = 0
        for model_id in ids:
            try:
                problems = store.verify(model_id)
                if not problems:
                    problems = [p for p in store.verify_variants(model_id).values() if p]
            except ModelError as exc:
                problems = [str(exc)]
            if problems:
                bad += 1
                print(
                    f"{model_id}: CORRUPT or missing: {'; '.join(problems)}\n"
                    f"  fix: gateway models pull --force {model_id}"
                )
            else:
                print(f"{model_id}: ok")
        return 1 if bad else 0
    raise AssertionError(cmd)
