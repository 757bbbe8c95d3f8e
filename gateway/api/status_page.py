"""GET /status: a live status page, one self-contained HTML file (no build step, no external
assets, works offline). The page holds no data: its script polls /v1/scheduler, sending the API
key the user typed (kept in localStorage) or passed once as `?key=`, so the key rules are those
of /v1/scheduler."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["operations"])

PAGE = Path(__file__).with_name("static") / "status.html"
# Inline script and style only; the page may talk to this origin and nothing else.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@cache
def _html() -> str:
    return PAGE.read_text("utf-8")


@router.get("/status", response_class=HTMLResponse, include_in_schema=False)
async def status_page() -> HTMLResponse:
    return HTMLResponse(
        _html(),
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )
