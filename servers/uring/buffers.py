"""Provided buffers: a pool the kernel picks from only when data arrives (5.19+).

A recv that names a buffer pins it for as long as the recv waits: 10,000 idle connections, 10,000
buffers. A recv that names a *group* (IOSQE_BUFFER_SELECT) takes a buffer only once bytes are
there, and its CQE says which one (flags >> 16). The group is a ring of io_uring_buf entries
(address, length, buffer id) in memory we share with the kernel: we add entries at the tail, the
kernel takes them from the head. Two pieces of our own memory: that ring, and the buffers.

Incremental consumption (IOU_PBUF_RING_INC, 6.12+): normally a completion uses up a whole buffer,
however few bytes it carries. With INC the kernel takes only what it received from the buffer at
the head and moves that entry's address and length on; the next completion continues in the same
buffer, and IORING_CQE_F_BUF_MORE says the kernel has not finished with it. So a pool of large
buffers serves 1 KiB messages a few hundred per buffer and a 64 KiB message in one piece. Both
sides keep track of how far each buffer is filled: the kernel in the entry, we in ``filled``.

When is a buffer ours again? When the kernel has finished with it (a CQE without BUF_MORE) and
every piece of it that we still hold (queued, or being sent) is done. ``holds[bid]`` counts both:
1 for the kernel while the buffer is in the ring, +1 per piece we hold. ``taken`` and
``released`` keep the count; at 0 the buffer goes back to the tail. Without INC every completion
is the kernel's last in that buffer, so the same count works for both kinds of ring.

Publishing the tail is the same release-store question as the SQ tail (see ring.py): on x86-64
plain stores in order suffice; elsewhere the kernel reads it in our thread, inside io_uring_enter.
"""

from __future__ import annotations

import ctypes

from servers.uring.abi import (
    BUF, BUF_RING_TAIL_OFFSET, BUF_SIZE, IORING_CQE_F_BUF_MORE, IORING_REGISTER_PBUF_RING,
    IORING_UNREGISTER_PBUF_RING, IOU_PBUF_RING_INC, io_uring_buf_reg,
)
from servers.uring.ring import Ring, UringError, map_memory, unmap_memory


class BufferRing:
    """``count`` buffers of ``size`` bytes in group ``group`` of ``ring``. ``incremental``:
    IOU_PBUF_RING_INC (6.12+); ``min_left``: the kernel retires a buffer once fewer bytes than
    that are left in it, so a message is not cut at a buffer's end (newest kernels; 0 = off)."""

    def __init__(self, ring: Ring, group: int, count: int, size: int, *,
                 incremental: bool = False, min_left: int = 0):
        assert count & (count - 1) == 0 and count <= 32768, "a power of two up to 32768"
        self.ring, self.group, self.count, self.size = ring, group, count, size
        self.incremental, self.min_left = incremental, min_left
        self.mask = count - 1
        self._ring_bytes = count * BUF_SIZE
        self.ring_addr, self.entries = map_memory(self._ring_bytes)  # page-aligned, as required
        self.pool_addr, self.pool = map_memory(count * size, huge=True)  # resident from the start
        self.view = self.pool  # slices of it, without copying
        self.addresses = [self.pool_addr + bid * size for bid in range(count)]  # by buffer id
        self.filled = [0] * count  # bytes the kernel has put in each buffer since it was given
        self.holds = [1] * count  # the kernel's hold (1 while in the ring) + the pieces we hold
        reg = io_uring_buf_reg(ring_addr=self.ring_addr, ring_entries=count, bgid=group,
                               flags=IOU_PBUF_RING_INC if incremental else 0, min_left=min_left)
        try:
            ring.register(IORING_REGISTER_PBUF_RING, ctypes.byref(reg), 1)
        except UringError:
            self._unmap()
            raise
        ring.buf_rings[group] = self
        self.tail = 0
        self._tail_index = ctypes.c_uint16.from_address(self.ring_addr + BUF_RING_TAIL_OFFSET)
        self._pack_buf = BUF.pack_into
        for bid in range(count):
            self._add(bid)
        self.publish()

    def _add(self, bid: int) -> None:
        """Put buffer ``bid``, whole and empty, at our tail (not visible until publish)."""
        self._pack_buf(self.entries, (self.tail & self.mask) * BUF_SIZE, self.addresses[bid],
                       self.size, bid)
        self.tail = (self.tail + 1) & 0xFFFF

    def taken(self, bid: int, length: int, flags: int) -> int:
        """A completion put ``length`` bytes into buffer ``bid``: where they start. We now hold
        that piece, until ``released``."""
        start = self.addresses[bid] + self.filled[bid]
        self.filled[bid] += length
        if flags & IORING_CQE_F_BUF_MORE:
            self.holds[bid] += 1  # the kernel goes on filling it: one hold more, ours
        # else: the kernel let go of it as we took the piece: the count stays
        return start

    def released(self, bid: int) -> bool:
        """A piece of ``bid`` is done with (sent, or dropped). True if the buffer went back."""
        self.holds[bid] -= 1
        if self.holds[bid]:
            return False
        self.holds[bid], self.filled[bid] = 1, 0
        self._add(bid)
        return True

    def kernel_done(self, bid: int, flags: int) -> bool:
        """A completion without data named ``bid`` (end of stream, an error): without BUF_MORE
        the kernel let go of it. True if the buffer went back."""
        return False if flags & IORING_CQE_F_BUF_MORE else self.released(bid)

    def publish(self) -> None:
        """Store the tail: the kernel may now use every buffer given back before it."""
        self._tail_index.value = self.tail

    def _unmap(self) -> None:
        unmap_memory(self.ring_addr, self._ring_bytes, self.entries)
        unmap_memory(self.pool_addr, self.count * self.size, self.pool)
        self.view = self.entries = self.pool = self._tail_index = None

    def unregister(self) -> None:
        if self.ring.fd >= 0 and self.group in self.ring.buf_rings:
            reg = io_uring_buf_reg(bgid=self.group)
            try:
                self.ring.register(IORING_UNREGISTER_PBUF_RING, ctypes.byref(reg), 1)
            except UringError:
                pass

    def close(self) -> None:
        """Unregister and unmap. (Ring.close closes the ring between the two.)"""
        self.unregister()
        self.ring.buf_rings.pop(self.group, None)
        if self.ring_addr:
            self._unmap()
            self.ring_addr = 0
