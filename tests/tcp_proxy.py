"""A TCP proxy in front of a real server, for tests that cut or refuse a process's connections to
it while its other connections go on working (what a network fault, or a server that drops one
client, does to the process).

    async with TcpProxy("127.0.0.1", 6379) as proxy:
        ...  # the process under test connects to 127.0.0.1:proxy.port
        proxy.refusing = True  # a new connection is closed at once; open ones go on
        proxy.upstream_ports()  # the local ports of the proxy's connections to the server
        proxy.cut()  # every open connection is closed (with `refusing`: the client is offline)

A test that blocks its own event loop (Selenium's calls do) runs the proxy on a thread of its own:

    with ProxyThread("127.0.0.1", gateway_port) as proxy:
        browser.get(f"http://127.0.0.1:{proxy.port}/")
        proxy.go_offline()  # open connections cut, new ones refused
        proxy.go_online()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusing = False
        """While True, a new connection is closed as soon as it is accepted."""
        self.port = 0

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for client, upstream in list(self._pairs):
            client.close()
            upstream.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        """Close every open connection, both its client's side and the server's: each side sees the
        other end hang up. New ones are accepted again unless `refusing`."""
        for client, upstream in list(self._pairs):
            client.close()
            upstream.close()

    def upstream_ports(self) -> set[int]:
        """The local ports of the open connections from this proxy to the server (as the server
        sees its clients' addresses)."""
        return {upstream.get_extra_info("sockname")[1] for _, upstream in self._pairs}

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        pipes = [self._spawn(self._pipe(reader, up_writer)), self._spawn(self._pipe(up_reader, writer))]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._pairs.discard(pair)
            writer.close()
            up_writer.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy until either side ends; the caller closes both."""
        with contextlib.suppress(OSError):
            while chunk := await reader.read(CHUNK):
                writer.write(chunk)
                await writer.drain()


class ProxyThread:
    """A TcpProxy served by an event loop on a thread of its own: it goes on forwarding while the
    test's thread blocks (a Selenium call waits for the page, which waits for the proxy)."""

    def __init__(self, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{port}", daemon=True)
        self._proxy = TcpProxy(host, port)

    @property
    def port(self) -> int:
        return self._proxy.port

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        self._run(self._proxy.__aenter__())
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._run(self._proxy.__aexit__(None, None, None))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def go_offline(self) -> None:
        """Refuse new connections, then cut the open ones: the client behind this proxy is offline."""
        self._run(self._set(refusing=True, cut=True))

    def go_online(self) -> None:
        self._run(self._set(refusing=False, cut=False))

    async def _set(self, *, refusing: bool, cut: bool) -> None:
        self._proxy.refusing = refusing
        if cut:
            self._proxy.cut()

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)
