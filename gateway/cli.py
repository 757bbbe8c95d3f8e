"""The `gateway` command: serve, models, speak, transcribe, doctor, settings. (Benchmarks run
from a checkout, `python -m benchmarks`, and are not part of the installed package.)"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .remote import add_commands as add_remote_commands

if TYPE_CHECKING:
    from .config import Settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gateway",
        description="OpenAI-compatible speech and transcription that share one GPU. Settings come "
        "from GATEWAY_* environment variables (see `gateway settings`).",
    )
    p.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the HTTP server")
    s.add_argument("--host", help="bind address (default: GATEWAY_SERVER__HOST)")
    s.add_argument("--port", type=int, help="port (default: GATEWAY_SERVER__PORT)")

    m = sub.add_parser("models", help="list, pull and verify models; ps, load, unload them")
    msub = m.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="known models: present, size, source")
    pull = msub.add_parser("pull", help="assemble or fetch models and verify them")
    pull.add_argument("ids", nargs="*", help="model ids (default: the default bundle)")
    pull.add_argument("--allow-download", action="store_true", help="allow Hugging Face downloads")
    pull.add_argument("--force", action="store_true", help="re-assemble even if present")
    verify = msub.add_parser("verify", help="re-hash model files against the pinned sha256")
    verify.add_argument("ids", nargs="*", help="model ids (default: the bundle and pulled models)")
    add_remote_commands(msub)  # ps | load | unload, on a running gateway

    sp = sub.add_parser("speak", help="synthesize speech to a file, without HTTP")
    sp.add_argument("text")
    sp.add_argument("-o", "--output", required=True, type=Path)
    sp.add_argument("--voice", default="alloy")
    sp.add_argument("--format", default=None, help="mp3|opus|aac|flac|wav|pcm (default: suffix)")
    sp.add_argument("--speed", type=float, default=1.0)
    sp.add_argument("--model", default="tts-1")
    sp.add_argument("--lang", default=None)
    sp.add_argument(
        "--captions", type=Path, default=None,
        help="also write captions of the words' timings (.srt or .vtt; the model needs durations)",
    )  # fmt: skip

    tr = sub.add_parser("transcribe", help="transcribe an audio file, without HTTP")
    tr.add_argument("file", type=Path)
    tr.add_argument("--format", default="text", help="json|text|srt|vtt|verbose_json")
    tr.add_argument("--language", default=None)
    tr.add_argument("--model", default="whisper-1")
    tr.add_argument("--translate", action="store_true", help="translate to English")

    sub.add_parser("doctor", help="diagnose GPU, CUDA libraries, runtimes and models")
    st = sub.add_parser("settings", help="print every setting with its env var and default")
    st.add_argument("--markdown", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import Settings
    from .logs import setup

    settings = Settings()
    quiet = args.command != "serve"
    setup(
        "WARNING" if quiet else settings.server.log_level,
        "text" if quiet else settings.server.log_format,
    )
    handler = COMMANDS[args.command]
    return int(handler(args, settings) or 0)


def bind_address(args: argparse.Namespace, settings: Settings) -> tuple[str, int]:
    """Where `gateway serve` listens: a flag given on the command line, else the setting (so an
    image or pod that passes no flags is moved by GATEWAY_SERVER__HOST/PORT alone)."""
    return args.host or settings.server.host, args.port or settings.server.port


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import logging
    import math
    import signal
    import time
    from typing import Any

    import uvicorn

    from .app import create_app
    from .http_server import raise_fd_limit, uvicorn_config

    raise_fd_limit(settings)
    app = create_app(settings)
    gw = app.state.gateway
    grace = settings.server.shutdown_grace_s
    log = logging.getLogger("gateway.cli")

    class DrainingServer(uvicorn.Server):
        """The first SIGTERM/SIGINT drains before uvicorn stops listening: readiness turns false
        at once (/ready answers 503 to the probe), queued and new work get 503, running units
        finish within shutdown_grace_s; then uvicorn shuts down as usual. A second signal skips
        the rest of the drain. Pod budget: terminationGracePeriodSeconds >= preStop sleep +
        shutdown_grace_s + ~10 s (k8s/base: 5 + 25 + 10 = 40)."""

        draining = False

        async def serve(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if not hasattr(self, "loop") or self.should_exit:
                super().handle_exit(sig, frame)  # uvicorn's own: a SIGINT now forces the exit
            elif self.draining:
                self.should_exit = True  # a second signal: stop draining, shut down now
            else:
                # Not recorded for uvicorn to re-raise after shutdown: a drained server exits 0.
                self.draining = True
                self.loop.call_soon_threadsafe(self.start_drain, sig)

        def start_drain(self, sig: int) -> None:
            self.drain_task = self.loop.create_task(self.drain(sig))  # keep a reference

        async def drain(self, sig: int) -> None:
            log.info(
                "%s: draining; not ready, running work may finish within %g s",
                signal.Signals(sig).name,
                grace,
            )
            t0 = time.monotonic()
            try:
                await gw.scheduler.close(grace)
            finally:
                # uvicorn's own wait for open connections gets what is left of the grace period
                # (at least 1 s to write the last responses), so the total stays ~grace.
                left = grace - (time.monotonic() - t0)
                self.config.timeout_graceful_shutdown = max(1, math.ceil(left))
                self.should_exit = True

    host, port = bind_address(args, settings)
    config = uvicorn_config(
        app,
        settings,
        host,
        port,
        timeout_graceful_shutdown=int(grace) + 1,
    )
    try:
        DrainingServer(config).run()
    except KeyboardInterrupt:  # SIGINT re-raised after a clean shutdown, as uvicorn.run ignores
        pass
    if gw.scheduler.left_running:
        # A unit still running past the grace is native code (a CTranslate2 decode, an ONNX run)
        # on a daemon thread: interpreter teardown frees the runtime under it and the process
        # dies of SIGSEGV (exit 139). Everything worth keeping is written; skip the teardown.
        log.warning("exiting with work still running past shutdown_grace_s; it is abandoned")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from . import remote
    from .registry import cli as models_cli

    if args.models_command in remote.COMMANDS:
        return remote.run(args, settings)
    return models_cli.run(args, settings)


def _cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from .doctor import render
    from .service import Gateway

    verdicts = Gateway(settings).diagnose()  # reads the models folder, never writes to it
    print(render(verdicts))
    return 0


def _cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    from .config import env_vars

    rows = env_vars()
    if args.markdown:
        print("| env var | default | meaning |\n|---|---|---|")
        for env, default, desc in rows:
            print(f"| `{env}` | `{default}` | {desc} |")
    else:
        for env, default, desc in rows:
            print(f"{env}={default}\n    {desc}")
    return 0


def _cmd_speak(args: argparse.Namespace, settings: Settings) -> int:
    from .local import speak

    fmt = args.format or (args.output.suffix.lstrip(".") or "mp3")
    kind = None
    if args.captions is not None:
        kind = args.captions.suffix.lstrip(".").lower()
        if kind not in ("srt", "vtt"):
            raise SystemExit(f"--captions {args.captions}: name a .srt or .vtt file")
    data, captions = asyncio.run(
        speak(settings, args.text, args.voice, fmt, args.speed, args.model, args.lang, kind)
    )
    args.output.write_bytes(data)
    print(f"wrote {len(data)} bytes to {args.output}", file=sys.stderr)
    if args.captions is not None and captions is not None:
        args.captions.write_text(captions, "utf-8")
        print(f"wrote captions to {args.captions}", file=sys.stderr)
    return 0


def _cmd_transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from .local import transcribe

    out = asyncio.run(
        transcribe(
            settings, args.file.read_bytes(), args.format, args.language, args.model, args.translate
        )
    )
    sys.stdout.write(out if isinstance(out, str) else json.dumps(out, ensure_ascii=False))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": _cmd_serve,
    "models": _cmd_models,
    "speak": _cmd_speak,
    "transcribe": _cmd_transcribe,
    "doctor": _cmd_doctor,
    "settings": _cmd_settings,
}


if __name__ == "__main__":
    raise SystemExit(main())
