"""GET /status: a live status page, one self-contained HTML file (no build step, no external
assets, works offline). The page holds no data: its script polls /v1/scheduler, sending the API
key the user typed (kept in localStorage) or passed once as `?key=`, so the key rules are those
of /v1/scheduler.

GET /realtime: a "try it" page in the same style that streams a WAV file or the microphone to
/v1/realtime (the OpenAI Realtime API's transcription session) and shows each turn's transcript;
the key goes as the WebSocket subprotocol `openai-insecure-api-key.<key>`, so the key rules are
those of /v1/realtime. Neither page needs a key to load: it holds nothing."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["operations"])

STATIC = Path(__file__).with_name("static")
PAGE = STATIC / "status.html"
REALTIME_PAGE = STATIC / "realtime.html"
# Inline script and style only; the page may talk to this origin and nothing else ('self' also
# allows ws:/wss: to this host, which /realtime's WebSocket needs).
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@cache
def _html(page: Path) -> str:
    # what both pages share, written in so each stays one response (no script src, no link)
    html = page.read_text("utf-8")
    for part in ("page.css", "key.js"):
        html = html.replace(f"/* {part} */", (STATIC / part).read_text("utf-8"))
    return html


def _page(page: Path) -> HTMLResponse:
    return HTMLResponse(
        _html(page),
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


@router.get("/status", response_class=HTMLResponse, include_in_schema=False)
async def status_page() -> HTMLResponse:
    return _page(PAGE)


@router.get("/realtime", response_class=HTMLResponse, include_in_schema=False)
async def realtime_page() -> HTMLResponse:
    return _page(REALTIME_PAGE)
