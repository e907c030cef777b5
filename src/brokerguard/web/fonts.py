"""A Japanese font served by the console itself, for machines that have none.

Analysts' desktops usually have a Japanese font, and the stylesheet tries the system's first;
a kiosk, a minimal Linux desktop or a headless browser may have none and would draw every
Japanese label as empty boxes. The IPAex Gothic that the ``matplotlib-fontja`` package already
installs (for the charts) is served here as the last entry of the font stack, so a browser only
fetches it — from this server, never from the internet — when no earlier font has the glyphs.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response

from brokerguard.service.errors import NotFound

__all__ = ["FONT_PATH", "font_file", "router"]

FONT_PATH = "/console/fonts/ipaexg.ttf"
router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def font_file() -> Path | None:
    """IPAex Gothic from the installed ``matplotlib-fontja`` package, or None."""
    spec = importlib.util.find_spec("matplotlib_fontja")  # located, not imported
    for location in (spec.submodule_search_locations or []) if spec else []:
        ttf = Path(location) / "fonts" / "ipaexg.ttf"
        if ttf.is_file():
            return ttf
    return None


@router.get(FONT_PATH)
async def japanese_font() -> Response:
    ttf = font_file()
    if ttf is None:
        raise NotFound("no Japanese font is installed (matplotlib-fontja)", field="font")
    return FileResponse(
        ttf, media_type="font/ttf", headers={"Cache-Control": "public, max-age=604800"}
    )
