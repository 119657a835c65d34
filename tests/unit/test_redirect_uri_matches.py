"""``redirect_uri_matches`` (issuer/clients.py): exact string matching (RFC 9700 section 4.1.3), with any port
on a loopback IP for http (RFC 8252 section 7.3) - and only there: "localhost" is a name, matched exactly."""

from __future__ import annotations

import pytest

from agentauth.issuer.clients import redirect_uri_matches

CASES = [
    # (registered, requested, matches)
    (("https://app.example/cb",), "https://app.example/cb", True),
    (("https://app.example/cb",), "https://app.example/cb/", False),  # trailing slash
    (("https://app.example/cb/",), "https://app.example/cb", False),
    (("https://app.example/cb",), "https://APP.example/cb", False),  # case
    (("https://app.example/cb",), "HTTPS://app.example/cb", False),
    (("https://app.example/cb",), "https://app.example/CB", False),
    (("https://app.example/cb",), "https://app.example/cb#x", False),  # fragment
    (("https://app.example/cb#x",), "https://app.example/cb#x", False),
    (("https://app.example/cb",), "https://app.example/cb?x=1", False),  # query added
    (("https://app.example/cb",), "https://app.example:443/cb", False),  # default port spelled out
    (("https://app.example/cb",), "https://app.example.evil/cb", False),
    (("https://app.example/cb",), "https://app.example/cb/../cb", False),
    (("https://app.example/cb",), "https://app.example/%63b", False),  # percent-encoding
    (("https://app.example:8443/cb",), "https://app.example:9443/cb", False),  # https: port is exact
    (("http://127.0.0.1/cb",), "http://127.0.0.1:53124/cb", True),  # loopback: any port
    (("http://127.0.0.1:3000/cb",), "http://127.0.0.1:53124/cb", True),
    (("http://127.0.0.1:3000/cb",), "http://127.0.0.1/cb", True),
    (("http://[::1]/cb",), "http://[::1]:61000/cb", True),
    (("http://[::1]:80/cb",), "http://[::1]:61000/cb", True),
    (("http://127.0.0.1/cb",), "http://127.0.0.1:53124/other", False),  # path still exact
    (("http://127.0.0.1/cb",), "http://127.0.0.1:53124/cb/", False),
    (("http://127.0.0.1/cb",), "http://127.0.0.1:53124/cb?x", False),
    (("http://127.0.0.1/cb",), "http://127.0.0.1:53124/cb#f", False),
    (("http://127.0.0.1/cb",), "http://[::1]:53124/cb", False),  # another host
    (("http://127.0.0.1/cb",), "http://127.0.0.2:53124/cb", False),
    (("http://127.0.0.1/cb",), "https://127.0.0.1:53124/cb", False),  # another scheme
    (("http://127.0.0.1/cb",), "http://user@127.0.0.1:53124/cb", False),
    (("http://127.0.0.1/cb",), "http://127.0.0.1:notaport/cb", False),
    (("http://localhost:3000/cb",), "http://localhost:3000/cb", True),  # localhost: exact only
    (("http://localhost:3000/cb",), "http://localhost:3001/cb", False),
    (("http://localhost/cb",), "http://localhost:3001/cb", False),
    (("http://localhost/cb",), "http://127.0.0.1:3001/cb", False),
    (("com.example.app:/cb",), "com.example.app:/cb", True),  # private-use scheme: exact
    (("com.example.app:/cb",), "com.example.app:/cb2", False),
    ((), "https://app.example/cb", False),
    (("https://app.example/cb",), "", False),
]


@pytest.mark.parametrize(("registered", "requested", "expected"), CASES)
def test_redirect_uri_matches(registered: tuple[str, ...], requested: str, expected: bool) -> None:
    assert redirect_uri_matches(registered, requested) is expected
