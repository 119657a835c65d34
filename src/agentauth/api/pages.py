"""The HTML pages for people (login, sign-up, account, the authorization endpoint's consent): one page shell and
the headers every one of them sends - no framing, no caching, no script, nothing loaded from elsewhere but a
client's logo - so each page module only writes its own markup. Everything interpolated is escaped (``esc``)."""

from __future__ import annotations

import html
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

MAX_FORM_CHARS = 16_384
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}"
    "h1{font-size:1.4rem}fieldset{border:1px solid #ccc;border-radius:.4rem;margin:1rem 0}"
    "label{display:block;margin:.4rem 0}input[type=email],input[type=password],input[type=text]{width:100%;"
    "padding:.4rem;font-size:1rem;box-sizing:border-box}code{word-break:break-all}.muted{color:#555}"
    "button{font-size:1rem;padding:.5rem 1.2rem;margin:.3rem .5rem .3rem 0}.error{color:#a00}"
    "table{border-collapse:collapse}td,th{padding:.2rem .6rem;text-align:left;border-bottom:1px solid #eee}"
)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def headers(form_targets: tuple[str, ...] = ()) -> dict[str, str]:
    """Forms post to this origin and - browsers apply ``form-action`` to the redirect a submission ends in - to
    ``form_targets`` (the consent page's client redirect origin)."""
    targets = " ".join(("'self'", *form_targets))
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action {targets}; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "same-origin",  # no-referrer would make browsers send "Origin: null" on our own forms
        "X-Content-Type-Options": "nosniff",
    }


def page(title: str, body: str, status: int = 200, form_targets: tuple[str, ...] = ()) -> HTMLResponse:
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style>'
        # No icon of our own: without this Firefox fetches /favicon.ico, which img-src (https:, data:) refuses
        # over http and reports as a CSP violation on every page.
        '<link rel="icon" href="data:,"></head>'
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=headers(form_targets))


def message_page(title: str, text: str, status: int) -> HTMLResponse:
    return page(title, f"<h1>{esc(title)}</h1><p>{esc(text)}</p>", status=status)


def redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers=headers())


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'


async def form_pairs(request: Request) -> list[tuple[str, str]] | None:
    """An ``application/x-www-form-urlencoded`` body as (name, value) pairs; None when too long or not a form."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    body = await request.body()
    if len(body) > MAX_FORM_CHARS:
        return None
    return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
