#!/usr/bin/env python3
"""Writes the generated seed files of tests/fuzz/corpus (ucall, dma_chain and a minimal ELF).
The other seeds (flag command lines, stripped built-in guests) are committed as they are.
Run from anywhere: python3 tests/fuzz/make_seeds.py. Layouts: guests/include/mmuvisor/guest_abi.h."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
UCALL_MAGIC = 0x55434C4C
DMA_MAGIC = 0x31414D44
COPY, FILL, CHECKSUM = 1, 2, 3


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- ucall: [width][offset][gpa u32][bytes at gpa] (ucall_fuzz.cc) ----
def ucall(cmd, args=(), text=b"", gpa=0x40, width=4, offset=0):
    a = list(args) + [0] * (6 - len(args))
    block = struct.pack("<II6Q", UCALL_MAGIC, cmd, *a) + text.ljust(192, b"\0")[:192]
    return bytes([width, offset]) + struct.pack("<I", gpa) + block


write("ucall", "print", ucall(1, text=b"hello from vcpu 0\n"))
write("ucall", "sync", ucall(2, (7, 1, 2, 3, 4, 5)))
write("ucall", "assert", ucall(3, (12, 0xdead, 0xbeef), b"guest.c:12: x == y"))
write("ucall", "done", ucall(4, (0,)))
write("ucall", "balloon", ucall(5, (0x1000, 0x2000)))
write("ucall", "report", ucall(6, (1, 3, 100, 0x1234, 5, 0)))
write("ucall", "print_unterminated", ucall(1, text=b"x" * 192))
write("ucall", "straddles_slots", ucall(4, (1,), gpa=0x4000 - 64))


# ---- dma_chain: [doorbell u32][failing page][RAM from gpa 0] (dma_chain_fuzz.cc) ----
def desc(op, src=0, dst=0, length=0, value=0, nxt=0, flags=0):
    return struct.pack("<II6QII", DMA_MAGIC, op, src, dst, length, value, 0, nxt, flags, 0)


def ram(pieces):  # only up to the last byte written: the harness zero-fills the rest
    buf = bytearray(max(gpa + len(data) for gpa, data in pieces))
    for gpa, data in pieces:
        buf[gpa:gpa + len(data)] = data
    return bytes(buf)


def dma(doorbell, pieces, failing_page=0xFF):
    return struct.pack("<I", doorbell) + bytes([failing_page]) + ram(pieces)


pattern = bytes(range(256)) * 4
write("dma_chain", "copy", dma(0x40, [(0x40, desc(COPY, 0x1000, 0x2000, 64)), (0x1000, pattern[:64])]))
write("dma_chain", "chain3", dma(0x40, [
    (0x40, desc(COPY, 0x1000, 0x2000, 256, nxt=0x80)),
    (0x80, desc(FILL, dst=0x3000, length=4096, value=0x0123456789ABCDEF, nxt=0xC0)),
    (0xC0, desc(CHECKSUM, src=0x1000, length=128)),
    (0x1000, pattern[:256])]))
write("dma_chain", "cross_page", dma(0x40, [(0x40, desc(COPY, 0x1FF8, 0x2FF0, 32))]))
write("dma_chain", "fault_page", dma(0x40, [(0x40, desc(COPY, 0x1000, 0x3000, 64))], failing_page=3))
write("dma_chain", "self_loop", dma(0x40, [(0x40, desc(FILL, dst=0x2000, length=8, nxt=0x40))]))
write("dma_chain", "expect_error", dma(0x40, [(0x40, desc(COPY, 0x1000, 0x1008, 64, flags=1, nxt=0x80)),
                                               (0x80, desc(FILL, dst=0x3FF8, length=16))]))


# ---- elf_loader: a minimal long-mode ELF64 (one PT_LOAD at MMV_IMAGE_GPA: hlt) ----
def tiny_elf():
    base = 0x100000
    code = b"\xf4\xeb\xfd"  # hlt; jmp .-1
    ehsize, phsize = 64, 56
    off = ehsize + phsize
    eh = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
                     2, 0x3E, 1, base + off, ehsize, 0, 0, ehsize, phsize, 1, 64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, off + len(code), off + len(code), 0x1000)
    return eh + ph + code


write("elf_loader", "tiny64", tiny_elf())
