"""Rewriting the HTML pages of the UIs ``fer-ui`` serves (kedro-viz, MLflow): the page is the one
place where a browser-side default can be set before the UI's own scripts run."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def rewrite_html_pages(app, rewrite: Callable[[str], str]) -> None:  # noqa: ANN001 - a Starlette/FastAPI app
    """Pass every HTML page ``app`` serves through ``rewrite`` (other responses are untouched)."""
    from starlette.responses import Response

    @app.middleware("http")
    async def rewritten_pages(request, call_next):  # noqa: ANN001, ANN202
        response = await call_next(request)
        if not response.headers.get("content-type", "").startswith("text/html"):
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        page = rewrite(body.decode("utf-8"))
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return Response(page, status_code=response.status_code, headers=headers, media_type="text/html")


def first_visit_script(defaults: dict[str, Any], landing: str = "") -> str:
    """A ``<script>`` that stores each of ``defaults`` (localStorage key -> value, stored as JSON)
    that the browser has no value for yet, so a choice made in the UI is never overwritten; and,
    given a ``landing`` fragment (``#/experiments/1/runs``), sends a visit to the bare address there."""
    stored = {key: json.dumps(value) for key, value in defaults.items()}
    return (
        "<script>(function(){"
        f"var defaults={json.dumps(stored)};"
        "try{for(var key in defaults){if(localStorage.getItem(key)===null){localStorage.setItem(key,defaults[key]);}}}"
        "catch(e){}"  # storage refused (private window): the UI keeps its own defaults
        f"var landing={json.dumps(landing)};"
        "if(landing&&(location.hash===''||location.hash==='#'||location.hash==='#/')){location.replace(landing);}"
        "})();</script>"
    )


def with_head_script(html: str, script: str) -> str:
    """``html`` with ``script`` as the first element of its ``<head>``: before the UI's scripts."""
    head = html.find("<head>")
    if head < 0:
        return html
    at = head + len("<head>")
    return html[:at] + script + html[at:]
