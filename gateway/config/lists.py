"""The type of a setting that is a list of strings.

Users set lists as one comma-separated variable (`GATEWAY_MODELS__PRELOAD=whisper-base,kokoro`, in
manifests already deployed), so that form must keep working. pydantic-settings would instead
JSON-decode a list field's variable and fail on the comma form; `NoDecode` hands this validator
the raw string, which takes both the comma form and a JSON list (`["whisper-base","kokoro"]`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_settings import NoDecode


def split_list(value: Any) -> Any:
    """A comma-separated string or a JSON list as a list, each item stripped, empty ones dropped
    (`a, b,` is `["a", "b"]`, the empty string no items); anything else is left to pydantic."""
    if isinstance(value, str):
        text = value.strip()
        # a value starting with "[" is the JSON form: a broken one is an error, not one item
        value = json.loads(text) if text.startswith("[") else text.split(",")
    if isinstance(value, list | tuple):
        # non-strings stay, so that pydantic rejects them by name instead of one being coerced
        items = [v.strip() if isinstance(v, str) else v for v in value]
        return [v for v in items if v != ""]
    return value


StrList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
