"""A client generated from ``/openapi.json`` works (issue 16 item 2): ``openapi-python-client`` generates it from
the document a live ``agentauth serve`` publishes, with no warning (``--fail-on-warning``: the form-and-JSON
bodies the token, introspection and revocation endpoints once declared made it write modules that fail with
``NameError: name 'Unset' is not defined``); every generated module imports; and the README's walkthrough runs
through the generated functions against that server: quickstart, a client credentials token, the agent list
with it, introspection, revocation - after which the token is refused and introspects inactive.

The generator runs from a virtual environment of its own, made once per run (``GENERATOR``): it pins typer and
click versions that break this project's CLI, so it is no dependency of the project. The generated package needs
``httpx`` and ``attrs`` at run time (both test dependencies here)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from live_server import LiveServer, free_ports, issuer_env, spawn

pytestmark = pytest.mark.slow
PACKAGE = "agentauth_client"
GENERATOR = "openapi-python-client==0.29.1"
CONFIG = f"package_name_override: {PACKAGE}\nproject_name_override: agentauth-client\npost_hooks: []\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("openapi-client")
    (port,) = free_ports(1)
    live = spawn(issuer_env(tmp / "data", port), port, tmp / "issuer.log", log_level="warning")
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``openapi-python-client`` command, installed into a fresh virtual environment."""
    venv = tmp_path_factory.mktemp("generator-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", GENERATOR]
    run = subprocess.run(install, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return venv / "bin" / "openapi-python-client"


@pytest.fixture(scope="module")
def generated(server: LiveServer, generator: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package, imported from its temporary directory (and forgotten afterwards)."""
    tmp = tmp_path_factory.mktemp("generated")
    document = tmp / "openapi.json"
    document.write_bytes(httpx.get(f"{server.url}/openapi.json").raise_for_status().content)
    (tmp / "config.yml").write_text(CONFIG)
    command = [str(generator), "generate", "--path", str(document), "--meta", "none",
               "--config", str(tmp / "config.yml"), "--output-path", str(tmp / "out" / PACKAGE),
               "--fail-on-warning"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "Warning" not in output and "Error" not in output, output
    sys.path.insert(0, str(tmp / "out"))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp / "out"))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def module(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_every_generated_module_imports(generated: ModuleType) -> None:
    names = [info.name for info in pkgutil.walk_packages(generated.__path__, f"{PACKAGE}.")]
    for name in names:
        importlib.import_module(name)
    operations = {n.rsplit(".", 1)[1] for n in names if n.startswith(f"{PACKAGE}.api.")}
    assert {"token", "introspect", "revoke", "quickstart", "list_agents", "create_agent"} <= operations
    assert len([n for n in names if n.startswith(f"{PACKAGE}.api.") and n.count(".") == 3]) >= 40


def test_the_walkthrough_runs_through_the_generated_client(generated: ModuleType, server: LiveServer) -> None:
    models = module(generated, "models")
    quickstart = module(generated, "api.agents.quickstart")
    token = module(generated, "api.auth.token")
    list_agents = module(generated, "api.agents.list_agents")
    introspect = module(generated, "api.auth.introspect")
    revoke = module(generated, "api.auth.revoke")

    # Closed by the with blocks: the generated clients hold httpx clients (an unclosed one is a ResourceWarning).
    with generated.Client(base_url=server.url, raise_on_unexpected_status=True) as anonymous:
        asked = models.QuickstartRequest(name="generated", agent_type=models.QuickstartRequestAgentType.ASSISTANT)
        created = quickstart.sync(client=anonymous, body=asked)
        assert isinstance(created, models.QuickstartResponse), created
        assert created.agent.did.startswith("did:key:z6Mk")

        form = models.TokenBody(
            grant_type=models.TokenBodyGrantType.CLIENT_CREDENTIALS,
            client_secret=created.api_key,
            scope="agents.read tokens.introspect",
        )
        issued = token.sync(client=anonymous, body=form)
        assert isinstance(issued, models.TokenResponse), issued
        assert set(issued.scope.split()) == {"agents.read", "tokens.introspect"} and issued.expires_in > 0

        with generated.AuthenticatedClient(base_url=server.url, token=issued.access_token) as authorized:
            page = list_agents.sync(client=authorized)
            assert isinstance(page, models.AgentPage), page
            assert [agent.did for agent in page.items] == [created.agent.did]

            seen = introspect.sync(client=authorized, body=models.IntrospectBody(token=issued.access_token))
            assert isinstance(seen, models.IntrospectionResponse), seen
            assert seen.active is True and seen.sub == created.agent.did and seen.client_id == created.agent.id

            revoked = revoke.sync_detailed(client=authorized, body=models.RevokeBody(token=issued.access_token))
            assert revoked.status_code == 200

            refused = list_agents.sync_detailed(client=authorized)
            assert refused.status_code == 401 and refused.parsed is not None
            assert refused.parsed.error == "invalid_token"
            as_owner = models.IntrospectBody(token=issued.access_token, client_secret=created.api_key)
            after = introspect.sync(client=anonymous, body=as_owner)
            assert isinstance(after, models.IntrospectionResponse) and after.active is False
