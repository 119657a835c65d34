"""The API documentation pages: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, with the assets the
``fastapi_offline`` package ships (served from ``/docs/static``), so both work without internet and load
nothing from elsewhere.

Each page is sent with the headers of the app's other pages (``pages.headers``: no framing, no caching) and a
Content-Security-Policy of its own that allows scripts and styles from this origin only. Swagger UI's inline
start-up script (FastAPI's ``get_swagger_ui_html``) is allowed by its SHA-256 hash (CSP 3 section 8.3),
computed from the page itself. ReDoc writes its styles into ``<style>`` elements at run time (its bundled CSS as
it loads, then styled-components), which no hash can name, and its ``nonce`` option cannot help: it reads the
``nonce`` attribute, which browsers hide from scripts (HTML "nonce attributes"), and the bundle injects CSS
before reading options. So the ReDoc page - written here, as ``get_redoc_html`` has no place for a script -
starts with a short script, carrying a fresh nonce per request, that gives every ``<style>`` element a script
creates that nonce; a ``<style>`` in the markup itself still gets none, which is what the nonce is for.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from agentauth import paths
from agentauth.api import pages

REDOC = "/redoc"
STATIC = f"{paths.DOCS}/static"
SWAGGER_PARAMETERS = {"validatorUrl": None}  # Swagger UI's default validator badge calls validator.swagger.io
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _source(digest_of: str) -> str:
    digest = base64.b64encode(hashlib.sha256(digest_of.encode("utf-8")).digest()).decode("ascii")
    return f"'sha256-{digest}'"


def policy(scripts: str = "", styles: str = "", workers: str = "'none'") -> str:
    """Only this origin, plus the given hash or nonce sources; ``data:`` images are Swagger UI's icons."""
    return (
        f"default-src 'none'; script-src 'self'{scripts}; style-src 'self'{styles}; img-src 'self' data:; "
        f"connect-src 'self'; worker-src {workers}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def swagger_page(title: str) -> tuple[bytes, dict[str, str]]:
    """Swagger UI's page and its headers: one page for every request, its inline script allowed by hash."""
    response = get_swagger_ui_html(
        openapi_url=paths.OPENAPI,
        title=f"{title} - Swagger UI",
        swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{STATIC}/favicon.png",
        swagger_ui_parameters=SWAGGER_PARAMETERS,
    )
    body = bytes(response.body)
    inline = _INLINE_SCRIPT.findall(body.decode("utf-8"))
    if not inline:
        raise RuntimeError("Swagger UI's page has no inline start-up script to allow: FastAPI changed it")
    hashes = "".join(f" {_source(script)}" for script in inline)
    return body, pages.headers() | {"Content-Security-Policy": policy(scripts=hashes)}


# Runs before ReDoc's bundle: the style elements scripts create (only scripts from this origin run) carry the
# page's nonce, read from this script's own ``nonce`` property (the attribute reads empty once parsed).
_STYLE_NONCE_SCRIPT = (
    "(()=>{const nonce=document.currentScript.nonce,create=Document.prototype.createElement;"
    "Document.prototype.createElement=function(name,options){const element=create.call(this,name,options);"
    'if(String(name).toLowerCase()==="style")element.nonce=nonce;return element};})();'
)


def redoc_page(title: str, nonce: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{pages.esc(title)} - ReDoc</title>'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<link rel="icon" href="{STATIC}/favicon.png"><script nonce="{nonce}">{_STYLE_NONCE_SCRIPT}</script>'
        f'</head><body><redoc spec-url="{paths.OPENAPI}"></redoc>'
        f'<script src="{STATIC}/redoc.standalone.js"></script></body></html>'
    )


def install(app: FastAPI) -> None:
    """The two pages and their assets; the app must be made with ``docs_url=None, redoc_url=None`` (FastAPI's
    own pages load Swagger UI and ReDoc from a CDN)."""
    assets = resources.files("fastapi_offline") / "static"
    app.mount(STATIC, StaticFiles(directory=str(assets)), name="docs-static")
    swagger, swagger_headers = swagger_page(app.title)

    # Plain Starlette routes, as FastAPI adds its own docs pages: no dependencies, no operation, not in the schema.
    async def swagger_ui(request: Request) -> HTMLResponse:
        return HTMLResponse(swagger, headers=swagger_headers)

    async def redoc(request: Request) -> HTMLResponse:
        nonce = secrets.token_urlsafe(18)
        source = f" 'nonce-{nonce}'"
        # ReDoc's search index runs in a worker it makes from a blob: URL (one of its own scripts).
        csp = policy(scripts=source, styles=source, workers="blob:")
        headers = pages.headers() | {"Content-Security-Policy": csp}
        return HTMLResponse(redoc_page(app.title, nonce), headers=headers)

    app.add_route(paths.DOCS, swagger_ui, include_in_schema=False)
    app.add_route(REDOC, redoc, include_in_schema=False)
