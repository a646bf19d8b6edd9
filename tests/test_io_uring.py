"""io_uring beyond the contract: the lab's own ring (servers/uring/) really talks to the kernel,
the probe tells the truth (and why not, where io_uring is refused), every fallback path serves,
an idle connection pins no buffer, and backpressure holds with a multishot recv."""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import random
import re
import socket
import sys
import threading
import time

import pytest

import servers
from servers import io_uring_server, launch, uring
from servers.uring import ring as ring_module
from servers.uring.ops import Ops
from tests.echo_client import connect, exchange, round_trip_s

ENTRY = servers.get("io_uring")
AVAILABLE, REASON = ENTRY.availability()
needs_io_uring = pytest.mark.skipif(not AVAILABLE, reason=f"io_uring unavailable here: {REASON}")
rng = random.Random(15)
KiB, MiB = 1 << 10, 1 << 20


# -- the layouts: what the kernel's header says -------------------------------------------------


def test_entry_layouts_match_the_kernel_header():
    # Sizes and field offsets of include/uapi/linux/io_uring.h, as the ctypes structures say them
    abi = uring.abi
    assert ctypes.sizeof(abi.io_uring_params) == 120 and abi.io_uring_params.sq_off.offset == 40
    assert abi.io_uring_params.cq_off.offset == 80
    assert [getattr(abi.io_sqring_offsets, f).offset for f in ("head", "tail", "array", "user_addr")] \
        == [0, 4, 24, 32]
    assert abi.io_cqring_offsets.cqes.offset == 20
    sqe = {name: getattr(abi.io_uring_sqe, name).offset for name, _ in abi.io_uring_sqe._fields_}
    assert sqe == {"opcode": 0, "flags": 1, "ioprio": 2, "fd": 4, "off": 8, "addr": 16, "len": 24,
                   "op_flags": 28, "user_data": 32, "buf_index": 40, "personality": 42,
                   "file_index": 44, "addr3": 48, "pad2": 56}
    assert uring.SQE_SIZE == uring.SQE.size == 64 and uring.CQE_SIZE == uring.CQE.size == 16
    # an io_uring_buf entry is 16 bytes, written as its first 14: its last 2 in entry 0 are the
    # ring's tail
    assert uring.BUF_SIZE == 16 and uring.BUF.size == 14 and uring.BUF_RING_TAIL_OFFSET == 14
    assert ctypes.sizeof(abi.io_uring_buf_reg) == 40
    # The hot path's struct packs the same bytes as the named structure.
    raw = uring.SQE.pack(0x1B, 0x20, 0x0002, 7, 0x0808080808080808, 0x1616161616161616,
                         0x24242424, 0x28282828, 0x3232323232323232, 0x4040, 0, 0, 0, 0)
    named = abi.io_uring_sqe.from_buffer_copy(raw)
    assert (named.opcode, named.flags, named.ioprio, named.fd) == (0x1B, 0x20, 2, 7)
    assert (named.off, named.addr, named.len) == (0x0808080808080808, 0x1616161616161616, 0x24242424)
    assert (named.op_flags, named.user_data, named.buf_index) == (0x28282828, 0x3232323232323232, 0x4040)
    # struct io_uring_cqe: user_data 0, res 4 bytes at 8, flags at 12 (buffer id in the top half)
    assert uring.CQE.unpack(b"\x01" + b"\x00" * 7 + (-11).to_bytes(4, "little", signed=True)
                            + (5 << 16 | 3).to_bytes(4, "little")) == (1, -11, 5 << 16 | 3)


def test_a_packer_refuses_a_layout_with_padding():
    class Padded(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint8), ("b", ctypes.c_uint64)]

    with pytest.raises(AssertionError, match="padding"):
        uring.abi.packer(Padded)


# -- the ring, against the kernel ---------------------------------------------------------------


@needs_io_uring
def test_nops_round_trip_and_the_indices_wrap():
    with uring.Ring(4) as ring:  # a tiny ring: 4 SQ slots, so 40 SQEs wrap it 10 times
        assert ring.sq_entries == 4 and ring.mmaps in (2, 3)
        seen = []
        for batch in range(10):
            for i in range(3):
                ring.prep_nop(batch * 3 + i)
            assert ring.submit(wait_for=3) == 3  # one io_uring_enter for the batch of three
            seen += ring.completions()
        assert [ud for ud, _, _ in seen] == list(range(30))
        assert all(res == 0 for _, res, _ in seen)
        # More SQEs than slots: the ring submits the full batch by itself, none is lost.
        for i in range(10):
            ring.prep_nop(100 + i)
        ring.submit(wait_for=0)
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 10 and time.monotonic() < deadline:
            ring.submit(wait_for=1)
            got += [ud for ud, _, _ in ring.completions()]
        assert sorted(got) == list(range(100, 110))


@needs_io_uring
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="SQPOLL is allowed on x86-64 only")
def test_sqpoll_takes_each_nop_once_and_never_runs_past_the_tail():
    """With SQPOLL a kernel thread on another CPU reads our SQ tail while we store it. A store
    that is not one plain move (struct.pack_into zeroes the bytes first) let it read a tail of
    0, take all 64 slots, stale ones included, and run on past the tail for good."""
    cpus = sorted(os.sched_getaffinity(0))
    try:
        ring = uring.Ring(64, sqpoll=True, sq_thread_cpu=cpus[-1] if len(cpus) > 1 else None)
    except uring.UringError as exc:
        pytest.skip(f"SQPOLL refused here: {exc}")
    with ring:
        done, deadline = 0, time.monotonic() + 3  # the bug showed within a second or two
        while done == 0 or (done < 2_000_000 and time.monotonic() < deadline):
            ring.prep_nop(done)
            ring.submit()
            wait_until = time.monotonic() + 5
            while not ring.cq_ready():
                assert time.monotonic() < wait_until, f"NOP {done} never completed"
            got = ring.completions()
            assert [ud for ud, _, _ in got] == [done], f"NOP {done}: the kernel took {len(got)}"
            head = ring.sq_head()
            assert (ring.sq_tail - head) & 0xFFFFFFFF <= 1, f"head {head}, tail {ring.sq_tail}"
            done += 1


@needs_io_uring
def test_pipe_read_completes_into_our_buffer():
    rfd, wfd = os.pipe()
    buffer = bytearray(64)
    try:
        with uring.Ring(8) as ring:
            ring.prep_read(rfd, uring.address_of(buffer), len(buffer), -1, 42)
            ring.submit()
            assert ring.completions() == [], "nothing to read yet: the read waits in the kernel"
            os.write(wfd, b"through the ring")
            ring.submit(wait_for=1)
            assert ring.completions() == [(42, 16, 0)]
            assert bytes(buffer[:16]) == b"through the ring"
    finally:
        os.close(rfd)
        os.close(wfd)


@needs_io_uring
def test_provided_buffer_ring_names_the_buffer_the_kernel_picked():
    with uring.Ring(8) as ring:
        if not uring.probe_features(ring)["pbuf_ring"]:
            pytest.skip("this kernel has no provided buffer rings (5.19+)")
        pool = uring.BufferRing(ring, 3, 4, 4096)
        a, b = socket.socketpair()
        try:
            for i, word in enumerate((b"first", b"second")):
                ring.prep_recv_select(a.fileno(), 3, i)
                ring.submit()
                b.send(word)
                ring.submit(wait_for=1)
                ((ud, res, flags),) = ring.completions()
                assert (ud, res) == (i, len(word)) and flags & uring.IORING_CQE_F_BUFFER
                bid = flags >> uring.IORING_CQE_BUFFER_SHIFT
                assert bid == i, "the ring hands out buffers in the order they were given"
                assert bytes(pool.view[bid * 4096:bid * 4096 + res]) == word
        finally:
            a.close()
            b.close()


@needs_io_uring
def test_giving_back_into_entry_0_leaves_the_published_tail_alone():
    """The buffer ring's tail shares bytes 14-15 of entry 0. Reusing entry 0 must not touch
    them: the kernel would see a tail of 0 (every buffer in use) until the next publish."""
    with uring.Ring(8) as ring:
        if not uring.probe_features(ring)["pbuf_ring"]:
            pytest.skip("this kernel has no provided buffer rings (5.19+)")
        pool = uring.BufferRing(ring, 5, 4, 4096)
        tail = ctypes.c_uint16.from_address(pool.ring_addr + uring.BUF_RING_TAIL_OFFSET)
        assert tail.value == 4, "all four buffers published"
        a, b = socket.socketpair()
        try:
            ring.prep_recv_select(a.fileno(), 5, 1)
            ring.submit()
            b.send(b"x")
            ring.submit(wait_for=1)
            ((_, res, flags),) = ring.completions()
            bid = flags >> uring.IORING_CQE_BUFFER_SHIFT
            assert (res, bid) == (1, 0)
            assert pool.released(bid)  # our tail is 4: the entry written is slot 4 & 3 == 0
            assert tail.value == 4, "writing entry 0 changed the tail the kernel reads"
            pool.publish()
            assert tail.value == 5
        finally:
            a.close()
            b.close()


def test_the_zero_tail_packer_writes_the_same_64_bytes():
    fields = (26, 0, 0, 7, 0, 0x7F0000001000, 1024, 0x4100, 0x1234)
    assert uring.SQE_ZERO_TAIL.size == 64
    assert uring.SQE_ZERO_TAIL.pack(*fields) == uring.SQE.pack(*fields, 0, 0, 0, 0, 0)
    slot = bytearray(b"\xff" * 64)  # a slot an earlier SQE left dirty
    uring.SQE_ZERO_TAIL.pack_into(slot, 0, *fields)
    assert bytes(slot[40:]) == bytes(24), "the tail (buf_index, personality...) was not zeroed"


@needs_io_uring
def test_the_written_out_send_writer_fills_the_sqe_as_the_generic_one():
    """Ring.prep_send (the echo's SQE, written out for speed) against Ops.prep_send (through
    Ring.sqe): the same 64 bytes, over a slot left dirty, and the same count of pending SQEs."""
    with uring.Ring(8) as ring:
        ring.sqes[:] = b"\xff" * len(ring.sqes)
        args = (7, 0x7F0000001000, 1024, 0x1234)
        ring.prep_send(*args)
        Ops.prep_send(ring, *args)
        assert bytes(ring.sqes[:64]) == bytes(ring.sqes[64:128])
        assert ring.sq_tail - ring.sq_head() == ring._pending == 2


def _recv_into_pool(ring, pool, sock_pair, payload: bytes, user_data: int):
    ring.prep_recv_select(sock_pair[0].fileno(), pool.group, user_data)
    ring.submit()
    sock_pair[1].send(payload)
    ring.submit(wait_for=1)
    ((ud, res, flags),) = ring.completions()
    assert (ud, res) == (user_data, len(payload)) and flags & uring.IORING_CQE_F_BUFFER
    return flags >> uring.IORING_CQE_BUFFER_SHIFT, res, flags


@needs_io_uring
def test_an_incremental_buffer_takes_one_message_after_another():
    with uring.Ring(8) as ring:
        found = uring.probe_features(ring)
        if not found["pbuf_inc"]:
            pytest.skip("this kernel has no incremental buffer consumption (6.12+)")
        pool = uring.BufferRing(ring, 4, 2, 4096, incremental=True)
        pair = socket.socketpair()
        try:
            pieces = []
            for i, word in enumerate((b"first", b"second", b"third")):
                bid, res, flags = _recv_into_pool(ring, pool, pair, word, i)
                assert bid == 0, "the kernel goes on filling the buffer at the head"
                assert flags & uring.IORING_CQE_F_BUF_MORE, "and says it is not done with it"
                start = pool.taken(bid, res, flags)
                assert ctypes.string_at(start, res) == word
                pieces.append(start)
            assert pieces[1] == pieces[0] + 5 and pieces[2] == pieces[1] + 6, "back to back"
            assert not any(pool.released(0) for _ in pieces), "the kernel still holds buffer 0"
            assert pool.holds[0] == 1 and pool.filled[0] == 16
        finally:
            for sock in pair:
                sock.close()


@needs_io_uring
def test_min_left_retires_a_buffer_before_a_message_would_be_cut():
    with uring.Ring(8) as ring:
        if not uring.probe_features(ring)["pbuf_min_left"]:
            pytest.skip("this kernel has no min_left for incremental buffers")
        pool = uring.BufferRing(ring, 6, 2, 4096, incremental=True, min_left=1024)
        pair = socket.socketpair()
        try:
            bid, res, flags = _recv_into_pool(ring, pool, pair, b"x" * 3500, 1)
            assert bid == 0 and not flags & uring.IORING_CQE_F_BUF_MORE, \
                "596 bytes left, under min_left: the kernel should let go of buffer 0"
            pool.taken(bid, res, flags)
            bid, res, flags = _recv_into_pool(ring, pool, pair, b"y" * 1000, 2)
            assert bid == 1, "the next message starts in a fresh buffer, not cut at 596 bytes"
            assert pool.released(0), "buffer 0: the kernel and its one piece are done with it"
        finally:
            for sock in pair:
                sock.close()


@needs_io_uring
def test_a_registered_ring_fd_enters_and_is_unregistered_at_close():
    # A thread may register at most 16 ring fds (IO_RINGFD_REG_MAX); a registration also holds
    # the ring open. So 20 rings in turn register only if each close() unregistered its own.
    for i in range(20):
        with uring.Ring(4) as ring:
            if not ring.register_ring_fd():
                if i == 0:
                    pytest.skip("this kernel cannot register a ring fd (5.18+)")
                pytest.fail(f"ring {i} could not register: the earlier ones were not unregistered")
            ring.prep_nop(i)
            ring.submit(wait_for=1)
            assert ring.completions() == [(i, 0, 0)]


@needs_io_uring
def test_setup_falls_back_when_the_kernel_refuses_newer_flags(monkeypatch):
    # An older kernel answers EINVAL to setup flags it does not know; the ring must retry
    # without them. Simulated by refusing DEFER_TASKRUN (6.1) and COOP_TASKRUN (5.19).
    real = ring_module._syscall
    refused = uring.IORING_SETUP_DEFER_TASKRUN | uring.IORING_SETUP_COOP_TASKRUN

    def old_kernel(number, *args):
        if number.value == uring.SYS_IO_URING_SETUP:
            params = args[1]._obj  # ctypes.byref(io_uring_params)
            if params.flags & refused:
                ctypes.set_errno(errno.EINVAL)
                return -1
        return real(number, *args)

    monkeypatch.setattr(ring_module, "_syscall", old_kernel)
    with uring.Ring(8) as ring:
        assert not ring.setup_flags & refused
        ring.prep_nop(1)
        ring.submit(wait_for=1)
        assert ring.completions() == [(1, 0, 0)]


# -- the probe ----------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/fd: Linux")
def test_probe_is_consistent_and_leaves_no_fd_open():
    before = os.listdir("/proc/self/fd")
    answers = {io_uring_server.probe() for _ in range(20)}
    assert os.listdir("/proc/self/fd") == before, "the probe leaked a descriptor (the ring's?)"
    assert len(answers) == 1
    (answer,) = answers
    assert answer is None or (isinstance(answer, str) and answer.strip())


@pytest.mark.parametrize("err, words", [
    (errno.EPERM, ("seccomp", "io_uring_disabled")),
    (errno.ENOSYS, ("no io_uring",)),
])
def test_probe_says_why_when_io_uring_setup_is_refused(monkeypatch, err, words):
    # What a Docker container's default seccomp profile, kernel.io_uring_disabled=2, or a kernel
    # without io_uring does to io_uring_setup.
    def refuse(*args, **kwargs):
        raise uring.UringError(err, os.strerror(err))

    monkeypatch.setattr(uring, "Ring", refuse)
    monkeypatch.setattr(sys, "platform", "linux")
    reason = io_uring_server.probe()
    assert reason.startswith(f"io_uring_setup failed: {errno.errorcode[err]}"), reason
    assert any(word in reason for word in words), reason


def _refuse_io_uring_setup() -> None:
    """In a child before exec: a seccomp filter that answers io_uring_setup with EPERM, as
    Docker's default profile does (no privilege needed with no_new_privs)."""
    libc = ctypes.CDLL(None, use_errno=True)

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]

    program = (SockFilter * 4)(
        SockFilter(0x20, 0, 0, 0),  # load seccomp_data.nr
        SockFilter(0x15, 0, 1, uring.SYS_IO_URING_SETUP),  # io_uring_setup?
        SockFilter(0x06, 0, 0, 0x00050000 | errno.EPERM),  # SECCOMP_RET_ERRNO | EPERM
        SockFilter(0x06, 0, 0, 0x7FFF0000))  # SECCOMP_RET_ALLOW
    fprog = SockFprog(4, program)
    if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0):  # NO_NEW_PRIVS, SECCOMP
        os._exit(99)


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="the filter's syscall number")
@pytest.mark.parametrize("name", ["io_uring", "c-uring"])
def test_where_seccomp_refuses_io_uring_the_registry_says_why(name):
    import subprocess
    entry = servers.get(name)
    if entry.source:  # build it before the filter is on (the compiler needs no io_uring anyway)
        from servers import native
        if native.why_not(name):
            pytest.skip(f"{name} cannot be built here: {native.why_not(name)}")
    probe = entry.probe.replace(":", "', '")
    done = subprocess.run(
        [sys.executable, "-c", f"import importlib; m, f = '{probe}'; print(getattr(importlib.import_module(m), f)())"],
        capture_output=True, text=True, timeout=60, preexec_fn=_refuse_io_uring_setup,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    reason = done.stdout.strip()
    assert "io_uring_setup failed: EPERM" in reason and "seccomp" in reason, reason


def test_probe_off_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert io_uring_server.probe().startswith("Linux-only")


def test_no_third_party_binding_is_imported():
    # The issue this module fixes: a binding whose wheel used AVX-512 killed every command.
    assert "liburing" not in sys.modules
    for path in (io_uring_server.__file__, *glob.glob(os.path.join(os.path.dirname(uring.__file__), "*.py"))):
        assert not re.search(r"^\s*(import|from)\s+liburing", open(path).read(), re.M), path


# -- the server ---------------------------------------------------------------------------------


def _anon_bytes(pid: int) -> int:
    """The process's anonymous memory: Pss_Anon (5.8+) or Anonymous from smaps_rollup."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    key = "Pss_Anon" if "Pss_Anon" in fields else "Anonymous"
    return int(fields[key].split()[0]) * 1024


def _idle_bytes_per_connection(extra_args: list[str], count: int) -> tuple[float, str]:
    with launch.start(ENTRY, extra_args) as server:
        warm = [connect(server.address) for _ in range(20)]
        for sock in warm:
            round_trip_s(sock, b"warm up")
        time.sleep(0.2)
        before = _anon_bytes(server.pid)
        clients = []
        try:
            for _ in range(count):
                sock = connect(server.address)
                round_trip_s(sock, rng.randbytes(100))  # accepted, served once, now idle
                clients.append(sock)
            time.sleep(0.3)
            grown = _anon_bytes(server.pid) - before
        finally:
            for sock in clients + warm:
                sock.close()
        return grown / count, server.ready_line


@needs_io_uring
@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs smaps_rollup")
def test_idle_connections_pin_no_buffer():
    per_conn, line = _idle_bytes_per_connection([], 500)
    if "provided buffers" not in line:
        pytest.skip(f"this kernel has no provided buffer rings: {line}")
    assert per_conn < 1 * KiB, f"{per_conn:.0f} bytes per idle connection ({line})"
    # The same measurement sees the pinned design: a 64 KiB buffer per pending recv.
    pinned, line = _idle_bytes_per_connection(["--without", "pbuf-ring"], 500)
    assert "per connection" in line
    assert pinned > 32 * KiB, f"the fallback should pin its buffers: {pinned:.0f} B ({line})"


FALLBACKS = [
    ["--without", "pbuf-inc"],
    ["--without", "registered-ring"],
    ["--without", "multishot-accept"],
    ["--without", "multishot-recv"],
    ["--without", "pbuf-ring"],
    ["--without", "defer-taskrun"],
    ["--without", "multishot-accept", "--without", "pbuf-ring", "--without", "defer-taskrun"],
    ["--sqpoll"],
    ["c-uring", "--sqpoll"],  # the C server's SQPOLL path (the conformance suite runs it without)
]


@needs_io_uring
@pytest.mark.parametrize("extra", FALLBACKS, ids=lambda a: " ".join(a).replace("--", ""))
def test_every_fallback_serves_exactly(extra):
    entry = ENTRY
    if extra[0] == "c-uring":
        entry, extra = servers.get("c-uring"), extra[1:]
        ok, why = entry.availability()
        if not ok:
            pytest.skip(f"c-uring unavailable here: {why}")
    elif "--sqpoll" in extra and os.uname().machine != "x86_64":
        pytest.skip("--sqpoll is allowed on x86-64 only (see servers/uring/ring.py)")
    with launch.start(entry, extra) as server:
        line = server.ready_line
        if "multishot-accept" in extra:
            assert "single-shot accept" in line
        if "pbuf-ring" in extra:
            assert "per connection" in line and "single-shot recv" in line
        if "multishot-recv" in extra:
            assert "single-shot recv" in line
        if "defer-taskrun" in extra:
            assert "defer-taskrun" not in line
        if "pbuf-inc" in extra:
            assert "incremental" not in line
        if "registered-ring" in extra:
            assert "registered ring" not in line
        if "--sqpoll" in extra:
            assert "sqpoll" in line
        errors = []

        def client(n: int) -> None:
            try:
                pieces = [rng.randbytes(rng.randint(1, 40_000)) for _ in range(20)]
                with connect(server.address) as sock:
                    assert exchange(sock, pieces, timeout_s=30) == b"".join(pieces)
            except Exception as exc:  # reported below, with the server's mode
                errors.append(f"client {n}: {exc!r}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, f"{line}: {errors}"
        with connect(server.address) as sock:
            big = rng.randbytes(2 * MiB)
            assert exchange(sock, [big], timeout_s=60) == big
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1) == b"", "the server closes after echoing everything"


@needs_io_uring
@pytest.mark.parametrize("extra", [[], ["--without", "multishot-recv"]], ids=["multishot", "single"])
def test_a_client_that_reads_late_gets_everything_and_pins_little(extra):
    # The client sends 48 MiB (more than all the socket buffers on the way hold) without reading.
    # The server must stop receiving from it (cancel its multishot recv) instead of queueing
    # buffers, keep serving others, and resume once the client reads: every byte comes back.
    with launch.start(ENTRY, extra) as server:
        data = rng.randbytes(48 * MiB)
        hog = connect(server.address)
        hog.settimeout(30)
        sender = threading.Thread(target=hog.sendall, args=(data,), daemon=True)
        before = _anon_bytes(server.pid)
        sender.start()
        time.sleep(1.0)  # the hog's socket buffers fill; the server has stopped reading
        assert sender.is_alive(), "48 MiB went out without anyone reading: no backpressure?"
        with connect(server.address) as other:
            assert exchange(other, [b"x" * 5000], timeout_s=20) == b"x" * 5000
        grown = _anon_bytes(server.pid) - before
        assert grown < 2 * MiB, f"the server grew {grown / MiB:.1f} MiB for one slow reader"
        got = bytearray()
        deadline = time.monotonic() + 60
        while len(got) < len(data) and time.monotonic() < deadline:
            got += hog.recv(1 << 20)
        sender.join(10)
        hog.close()
        assert len(got) == len(data) and got == data


def _ring_counters(pid: int) -> tuple[int, int]:
    """(SqTail, CqTail) of the process's one io_uring, from /proc/PID/fdinfo."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[io_uring]":
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            return int(fields["SqTail"]), int(fields["CqTail"])
    raise AssertionError(f"process {pid} holds no io_uring")


@needs_io_uring
def test_a_64_kib_message_is_one_receive_and_one_send():
    # With 16 KiB buffers a 64 KiB echo took 4 receive completions and 4 sends, each through
    # Python (4 SQEs, 8 CQEs per message): the reason io_uring ran at half c-epoll's rate there.
    with launch.start(ENTRY) as server:
        if "provided buffers" not in server.ready_line:
            pytest.skip(f"no provided buffer ring here: {server.ready_line}")
        message, rounds = rng.randbytes(64 * KiB), 40
        with connect(server.address) as sock:
            assert exchange(sock, [message], timeout_s=10) == message  # accepted, armed
            sq0, cq0 = _ring_counters(server.pid)
            for _ in range(rounds):
                assert exchange(sock, [message], timeout_s=10) == message
            sq1, cq1 = _ring_counters(server.pid)
    sqes, cqes = (sq1 - sq0) / rounds, (cq1 - cq0) / rounds
    # a message may arrive in two segments, read apart: a little over 1 and 2
    assert sqes <= 1.5 and cqes <= 3, f"{sqes:.2f} SQEs, {cqes:.2f} CQEs per 64 KiB echo ({server.ready_line})"


@pytest.mark.parametrize("name", ["io_uring", "c-uring"])
def test_the_buffer_pool_sits_in_huge_pages_where_thp_allows(name):
    # The kernel copies every message into the pool: in 4 KiB pages 16 MiB take 4,096 TLB entries,
    # in 2 MiB pages 8 (at 16 x 64 KiB c-uring spent 23.6 us per request with the first, 21.9
    # with the second, against c-epoll's 20.8-21.2, interleaved).
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            mode = f.read()
    except OSError:
        pytest.skip("no transparent huge pages here")
    if "[never]" in mode:
        pytest.skip(f"transparent huge pages are off here: {mode.strip()}")
    entry = servers.get(name)
    ok, why = entry.availability()
    if not ok:
        pytest.skip(f"{name} unavailable here: {why}")
    with launch.start(entry) as server:
        if "provided buffers" not in server.ready_line:
            pytest.skip(f"no provided buffer ring here: {server.ready_line}")
        with open(f"/proc/{server.pid}/smaps_rollup") as f:
            huge_kib = int(re.search(r"AnonHugePages:\s+(\d+)", f.read())[1])
    assert huge_kib >= io_uring_server.POOL_BYTES // 1024, f"{huge_kib} KiB in huge pages"


class _Recorder:
    """A ring that only records the sends the server writes."""

    def __init__(self):
        self.sends = []

    def prep_send(self, fd, addr, length, user_data):
        self.sends.append((addr, length))


def test_pieces_back_to_back_in_memory_go_out_in_one_send():
    server = object.__new__(io_uring_server.Server)  # the send path only: no ring, no pool
    recorder = _Recorder()
    server.prep_send = recorder.prep_send
    conn = io_uring_server.Connection(9, own_buffer=False)
    base = 0x7F0000000000
    conn.queue = [(3, base, 100), (3, base + 100, 50), (4, base + 4096, 10), (5, base + 4106, 5)]
    server.send_queued(conn)
    assert recorder.sends == [(base, 150)], "the two contiguous pieces of buffer 3: one send"
    assert conn.sending == (3, base, 150, (3,)), "buffer 3, then its second piece"
    conn.sending = None
    server.send_queued(conn)
    assert recorder.sends[-1] == (base + 4096, 15) and conn.sending[3] == (5,), \
        "contiguous across buffers 4 and 5 too"
    assert conn.queue == []


@needs_io_uring
def test_idle_connections_are_recv_requests_held_by_the_kernel():
    recv, accept = uring.IORING_OP_RECV, uring.IORING_OP_ACCEPT
    with launch.start(ENTRY) as server:
        clients = [connect(server.address) for _ in range(3)]
        try:
            for sock in clients:
                round_trip_s(sock, b"hi")
            rings = []
            for fd in os.listdir(f"/proc/{server.pid}/fd"):
                try:
                    if os.readlink(f"/proc/{server.pid}/fd/{fd}") == "anon_inode:[io_uring]":
                        rings.append(fd)
                except OSError:
                    pass
            assert len(rings) == 1, "the server should hold exactly one io_uring"
            # fdinfo lists the requests the kernel has parked waiting for their socket: one
            # accept on the listener and one recv per idle connection; no thread waits for them.
            deadline = time.monotonic() + 10
            while True:
                with open(f"/proc/{server.pid}/fdinfo/{rings[0]}") as f:
                    info = f.read()
                if "PollList:" not in info:
                    pytest.skip("this kernel's io_uring fdinfo does not list pending requests")
                ops = sorted(int(op) for op in re.findall(r"op=(\d+)", info.split("PollList:")[1]))
                if ops == sorted([accept] + [recv] * 3) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)  # the recv is re-armed just after the echo was sent
            assert ops == sorted([accept] + [recv] * 3), info
        finally:
            for sock in clients:
                sock.close()


@needs_io_uring
@pytest.mark.parametrize("extra", [["--without", "multishot-accept"], ["--without", "pbuf-ring"]],
                         ids=["single-shot-accept", "own-buffers"])
def test_out_of_fds_backs_off_on_every_accept_path(extra):
    # The contract's EMFILE check, on the fallback paths: the single-shot accept is not
    # resubmitted at once (a timer brings it back), and nothing spins.
    from tests.echo_client import serves, tree_cpu_s
    with launch.start(ENTRY, extra, nofile=64) as server:
        clients = []
        try:
            for _ in range(100):
                sock = connect(server.address)
                sock.sendall(b"x")
                clients.append(sock)
            time.sleep(1.0)
            cpu0, t0 = tree_cpu_s(server.pid), time.monotonic()
            time.sleep(1.5)
            used = tree_cpu_s(server.pid) - cpu0
            assert used < 0.5 * (time.monotonic() - t0), f"spins at EMFILE ({used:.2f} s CPU)"
            assert server.proc.poll() is None, server.stderr_tail()
        finally:
            for sock in clients:
                sock.close()
        assert serves(server.address, timeout_s=20), "does not serve again once fds free up"


@needs_io_uring
def test_an_empty_buffer_pool_delays_clients_but_loses_nothing():
    # A pool of 8 buffers: two clients that send without reading take them all (each holds
    # MAX_QUEUED_CHUNKS and a send in flight). A third client's recv then completes with
    # -ENOBUFS; it must be served as soon as the hogs read and buffers come back, every byte.
    small_pool = ("import sys; from servers import io_uring_server as s; s.POOL_BYTES = 8 * 64 * 1024; "
                  "sys.argv = ['io_uring', *sys.argv[1:]]; "
                  "s.run(s.serve, s.parse_args('io_uring', s.__doc__, extra=s.add_options))")
    with launch.start(["-c", small_pool]) as server:
        if not re.search(r"provided buffers [48]x", server.ready_line):
            pytest.skip(f"no provided buffer ring here: {server.ready_line}")
        hogs, senders = [], []
        data = rng.randbytes(32 * MiB)
        for _ in range(2):
            hog = connect(server.address)
            hog.settimeout(60)
            t = threading.Thread(target=hog.sendall, args=(data,), daemon=True)
            t.start()
            hogs.append(hog)
            senders.append(t)
        time.sleep(1.0)  # the hogs' sends stall; their chunks hold the pool
        late = connect(server.address)
        late.settimeout(30)
        message = rng.randbytes(3000)
        late.sendall(message)
        # Now the hogs read: their sends complete, buffers return, the late client is fed.
        readers = []
        got = [bytearray(), bytearray()]
        for hog, buf in zip(hogs, got, strict=True):
            def read(hog=hog, buf=buf):
                while len(buf) < len(data):
                    chunk = hog.recv(1 << 20)
                    if not chunk:
                        return
                    buf += chunk
            t = threading.Thread(target=read, daemon=True)
            t.start()
            readers.append(t)
        echoed = bytearray()
        while len(echoed) < len(message):
            echoed += late.recv(65536)
        assert echoed == message
        assert "buffer pool empty" in server.stderr_tail(), "the pool never ran dry: no test"
        for t in senders + readers:
            t.join(60)
        assert all(bytes(b) == data for b in got), "a hog's echo came back wrong"
        for sock in hogs + [late]:
            sock.close()
