"""Deliberate errors belong to the one tree (firebreak/errors.py): a refused switchover is an
OpsError the console answers with 503, a URL without a port an InputError (issue 29)."""

import asyncio

import httpx
import pytest

from firebreak.control import ops
from firebreak.control.door import dial_of
from firebreak.errors import FirebreakError, InputError, OpsError


def test_a_switchover_no_patroni_accepts_is_an_ops_error_naming_each_refusal():
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(412, text="candidate name does not match with sync_standby")

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
            return await ops.patroni_switchover(http, ["http://a:8008", "http://b:8008"], None, "pg-a", "pg-b")
    with pytest.raises(OpsError) as e:
        asyncio.run(go())
    assert isinstance(e.value, FirebreakError) and not isinstance(e.value, RuntimeError)
    assert "http://a:8008: HTTP 412" in str(e.value) and "http://b:8008: HTTP 412" in str(e.value)


@pytest.mark.parametrize("url", ["http://host", "http://host:port"])
def test_a_url_without_a_usable_port_is_an_input_error(url):
    with pytest.raises(InputError, match="needs a host and a port"):
        dial_of(url)
