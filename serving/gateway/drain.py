"""The end of a drain: stop taking connections without dropping one that the kernel already accepted.

uvicorn's own shutdown closes the listening socket and then every connection that has not sent a request yet. With
several workers the listening socket is one socket shared by all of them (and uvicorn's parent process): what a
worker accepted but had not read yet was closed without an answer, and connections waiting in the kernel's accept
queue when the last worker stopped were reset. So a worker whose in-flight requests are done:

1. stops new TCP handshakes on the shared socket (a socket filter dropping SYNs, Linux), so a client connecting
   from now on is refused when the process exits instead of being accepted and dropped;
2. keeps accepting for SETTLE_S, long enough for handshakes already under way to complete and be accepted by a
   worker;
3. stops accepting, then waits until every connection it holds has had its request answered (a request during
   the drain gets 503 `draining` with `Connection: close`), within the drain deadline;
4. leaves the rest to uvicorn's shutdown, which now finds only connections idle after an answer.

The names it reads from uvicorn (`Server.servers`, `Server.server_state.connections`, each protocol's `cycle` and
its `response_complete`) are those of uvicorn 0.54 (uvicorn/server.py, uvicorn/protocols/http/httptools_impl.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import socket
import struct
import sys
import time
from typing import Any

log = logging.getLogger("serving.gateway")

SETTLE_S = 0.2
_POLL_S = 0.02
# linux/include/uapi/asm-generic/socket.h: SO_ATTACH_FILTER 26. Classic BPF (linux/include/uapi/linux/filter.h);
# on a TCP socket the program sees the packet from the TCP header on, whose byte 13 holds the flags.
_SO_ATTACH_FILTER = 26
_BPF_LD_B_ABS, _BPF_ALU_AND_K, _BPF_JMP_JEQ_K, _BPF_RET_K = 0x30, 0x54, 0x15, 0x06
_TCP_FLAGS, _SYN, _ACK = 13, 0x02, 0x10
_DROP_SYN = (
    (_BPF_LD_B_ABS, 0, 0, _TCP_FLAGS),
    (_BPF_ALU_AND_K, 0, 0, _SYN | _ACK),
    (_BPF_JMP_JEQ_K, 0, 1, _SYN),  # a SYN without ACK opens a connection: drop it
    (_BPF_RET_K, 0, 0, 0),
    (_BPF_RET_K, 0, 0, 0xFFFFFFFF),  # anything else (the handshake's last ACK among them) passes
)


def refuse_new_handshakes(sockets: list[Any]) -> None:
    if sys.platform != "linux":
        return
    program = b"".join(struct.pack("HBBI", *insn) for insn in _DROP_SYN)
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(_DROP_SYN), ctypes.addressof(buffer))
    for sock in sockets:
        # A duplicate of the descriptor: the filter belongs to the socket itself, which every worker shares.
        with socket.socket(fileno=os.dup(sock.fileno())) as dup:
            try:
                dup.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
            except OSError as exc:
                log.warning("could not stop new connections on the listening socket: %r", exc)


def _unanswered(server: Any) -> int:
    """Connections that have not had a request answered yet (accepted and not read, or a request in progress)."""
    count = 0
    for conn in server.server_state.connections:
        cycle = getattr(conn, "cycle", None)
        if cycle is None or not cycle.response_complete:
            count += 1
    return count


async def close_listeners(server: Any, deadline: float) -> None:
    """Steps 1 to 3 above; uvicorn's `should_exit` is the caller's to set afterwards."""
    listening = list(server.servers)
    refuse_new_handshakes([sock for srv in listening for sock in srv.sockets or ()])
    await asyncio.sleep(SETTLE_S)
    for srv in listening:
        srv.close()
    while _unanswered(server) and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
    if left := _unanswered(server):
        log.warning("drain timeout: %d connection(s) closed without an answer", left)
