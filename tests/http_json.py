"""What the server tests share: a free port on 127.0.0.1 and a JSON POST."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any, Tuple


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post_json(
    port: int, body: Any, path: str = "/", timeout: float = 30.0, **headers: str
) -> Tuple[int, Any]:
    """(status, the JSON answer, or the text of a non-JSON one). `body`: bytes
    as they are, anything else as JSON. A server that does not answer raises
    OSError (urllib's URLError is one)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={"content-type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf8", "replace")
