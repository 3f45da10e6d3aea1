"""Serves the dashboard's files: ``GET /ui`` (the page), ``GET /ui/{file}`` (its script and
style sheet) and ``GET /`` (a redirect to ``/ui``).

The files are read once from the package (``static/``), so a request is a dict lookup. A strict
Content-Security-Policy lets the page load and connect to nothing but the gateway itself: no
CDN, no web font, no third-party script, even if one were added by mistake.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from modelrouter.errors import NotFound

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def load_files() -> dict[str, tuple[bytes, str]]:
    """Every file of ``static/`` by name, with its content type."""
    out = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in CONTENT_TYPES:
            out[item.name] = (item.read_bytes(), CONTENT_TYPES[suffix])
    return out


class DashboardPages:
    def __init__(self) -> None:
        self.files = load_files()

    def _file(self, name: str) -> Response:
        found = self.files.get(name)
        if found is None:
            raise NotFound(f"no dashboard file {name!r}")
        body, content_type = found
        return Response(body, 200, HEADERS, content_type)

    async def index(self, request: Request) -> Response:
        return self._file("index.html")

    async def asset(self, request: Request) -> Response:
        return self._file(request.path_params["file"])

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/ui", 307)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.root, methods=["GET"]),
            Route("/ui", self.index, methods=["GET"]),
            Route("/ui/", self.index, methods=["GET"]),
            Route("/ui/{file}", self.asset, methods=["GET"]),
        ]
