"""The runtime's HTTP client: requests wait at the gate, not in httpx's pool.

The transport behind the gate here is a stand-in for the network (what the gate protects
is httpx's pool, which is not ours): it counts the requests in flight and answers each
only when the test lets it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from steprun.runtime import Runtime
from steprun.runtime.http_client import MAX_CONNECTIONS, BoundedTransport, new_client


class HeldTransport(httpx.AsyncBaseTransport):
    """Answers a request once ``release`` is set; remembers the most at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most = 0
        self.closed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.release.wait()
        transport = self

        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                yield b'{"ok": true}'

            async def aclose(self) -> None:
                transport.in_flight -= 1
                transport.closed += 1

        return httpx.Response(200, stream=Body(), request=request)


def test_no_more_than_the_limit_of_requests_reach_the_transport_at_once() -> None:
    async def main() -> HeldTransport:
        held = HeldTransport()
        async with httpx.AsyncClient(transport=BoundedTransport(held, 3)) as client:
            sending = [asyncio.create_task(client.get("http://x.invalid/")) for _ in range(10)]
            await asyncio.sleep(0.05)
            assert held.in_flight == 3  # the other seven wait at the gate
            held.release.set()
            answers = await asyncio.gather(*sending)
        assert all(a.json() == {"ok": True} for a in answers)
        return held

    held = asyncio.run(main())
    assert held.most == 3
    assert held.closed == 10


def test_a_streamed_response_holds_its_slot_until_it_is_closed() -> None:
    async def main() -> None:
        held = HeldTransport()
        held.release.set()
        async with httpx.AsyncClient(transport=BoundedTransport(held, 1)) as client:
            request = client.build_request("GET", "http://x.invalid/")
            streamed = await client.send(request, stream=True)
            second = asyncio.create_task(client.get("http://x.invalid/"))
            await asyncio.sleep(0.05)
            assert not second.done()
            await streamed.aclose()
            assert (await second).status_code == 200

    asyncio.run(main())


def test_a_request_that_waits_longer_than_the_pool_timeout_gives_up() -> None:
    async def main() -> None:
        held = HeldTransport()
        async with httpx.AsyncClient(transport=BoundedTransport(held, 1)) as client:
            first = asyncio.create_task(client.get("http://x.invalid/"))
            await asyncio.sleep(0.01)
            with pytest.raises(httpx.PoolTimeout, match="no connection became free"):
                await client.get("http://x.invalid/", timeout=httpx.Timeout(5.0, pool=0.05))
            held.release.set()
            assert (await first).status_code == 200

    asyncio.run(main())


def test_a_failed_request_gives_its_slot_back() -> None:
    class Refusing(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

    async def main() -> None:
        async with httpx.AsyncClient(transport=BoundedTransport(Refusing(), 1)) as client:
            for _ in range(3):  # with a lost slot, the second would wait forever
                with pytest.raises(httpx.ConnectError):
                    await asyncio.wait_for(client.get("http://x.invalid/"), 1.0)

    asyncio.run(main())


def test_the_runtime_sends_over_the_network_through_the_gate() -> None:
    async def main() -> None:
        async with Runtime(autoload=False) as runtime:
            transport = runtime.http._transport
            assert isinstance(transport, BoundedTransport)
            assert transport._slots._value == MAX_CONNECTIONS

    asyncio.run(main())


def test_an_injected_transport_is_used_as_it_is() -> None:
    held = HeldTransport()
    client = new_client(transport=held, mounts={}, timeout=10.0)
    assert client._transport is held
    asyncio.run(client.aclose())
