"""`gateway models ps | load | unload`: model control of a running gateway, over HTTP (the
`/api/ps` routes), so a script can drive it like `ollama ps`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Settings

COMMANDS = ("ps", "load", "unload")


def add_commands(msub: Any) -> None:
    """The three sub-commands, on `gateway models`."""
    for name, text in (
        ("ps", "models loaded in a running gateway"),
        ("load", "load a model now in a running gateway"),
        ("unload", "unload a model now from a running gateway"),
    ):
        p = msub.add_parser(name, help=text)
        if name != "ps":
            p.add_argument("model", help="model id or alias (kokoro, whisper-base, whisper-1...)")
        if name == "load":
            p.add_argument("--lane", choices=["gpu", "cpu"], help="cpu: load on the CPU")
            p.add_argument("--keep-alive", help='"5m", seconds, -1 (forever) or 0 (after use)')
        p.add_argument("--url", help="gateway URL (default: http://GATEWAY_SERVER__HOST:PORT)")
        p.add_argument("--key", help="API key (default: the first configured key)")
        p.add_argument("--json", action="store_true", help="print the JSON answer")


def _url(args: argparse.Namespace, settings: Settings) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    host = settings.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{settings.server.port}"


def _table(models: list[dict[str, Any]]) -> str:
    lines = [f"{'MODEL':<16} {'LANE':<5} {'GPU MiB':>9} {'UNITS':>6}  {'IDLE SINCE':<26} UNTIL"]
    for m in models:
        held = "-" if m["gpu_used_mib"] is None else f"{m['gpu_used_mib']}/{m['gpu_budget_mib']}"
        until = "busy" if m["busy"] else "pinned" if m["pinned"] else m["expires_at"] or "forever"
        lines.append(
            f"{m['model']:<16} {m['lane']:<5} {held:>9} {m['units_run']:>6}  "
            f"{m['idle_since'] or '-':<26} {until}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    cmd = args.models_command
    key = args.key or next(iter(settings.api_keys()), None)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"{_url(args, settings)}/api/ps"
    try:
        with httpx.Client(headers=headers, timeout=600) as client:
            if cmd == "ps":
                r = client.get(url)
            elif cmd == "load":
                body = {"lane": args.lane, "keep_alive": args.keep_alive}
                r = client.post(f"{url}/{args.model}", json={k: v for k, v in body.items() if v})
            else:
                r = client.delete(f"{url}/{args.model}")
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the gateway at {url}: {exc}", file=sys.stderr)
        return 1
    if r.status_code != 200:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        print(f"error: {r.status_code}: {message}", file=sys.stderr)
        return 1
    body = r.json()
    if args.json:
        print(json.dumps(body, indent=2))
    elif cmd == "ps":
        print(_table(body["models"]))
    elif cmd == "load":
        why = f" ({body['reason']})" if body.get("reason") else ""
        print(f"{body['model']} loaded on the {body['lane'].upper()}{why}")
    else:
        lanes = ", ".join(body["unloaded"]) or "nothing was loaded"
        print(f"{body['model']} unloaded: {lanes}")
    return 0
