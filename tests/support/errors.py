"""The OpenAI error shape a refused request must answer with."""

from __future__ import annotations

from typing import Any


def assert_openai_error(r: Any, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert {"message", "type", "param", "code"} <= set(err) and err["message"].strip(), err
    return err
