#!/usr/bin/env python3
"""Seed corpora for the fuzz targets from shared/corpus.

dmar:       every dmar.dat as is.
table_walk: small memory images: RSDP (v0 or v2) at 0, an RSDT/XSDT, and a
            machine's DMAR/APIC/MCFG/HPET tables at small addresses.
Usage: python3 make_seeds.py [CORPUS_DIR]   (run from this directory)
"""
import os, shutil, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../../../shared/corpus")
out_dmar = os.path.join(here, "corpus/dmar")
out_walk = os.path.join(here, "corpus/table_walk")
os.makedirs(out_dmar, exist_ok=True)
os.makedirs(out_walk, exist_ok=True)


def fix(t, at):
    t[at] = 0
    t[at] = (-sum(t)) & 0xFF


def sdt(sig, body):
    t = bytearray(sig + struct.pack("<I", 36 + len(body)) + b"\x01\x00" + b"BOCHS " + b"BXPC    " + b"\x01\0\0\0BXPC\x01\0\0\0" + body)
    fix(t, 9)
    return bytes(t)


machines = sorted(d for d in os.listdir(corpus) if d.startswith("linuxhw__"))
n = 0
for i, m in enumerate(machines):
    p = os.path.join(corpus, m, "dmar.dat")
    if os.path.exists(p):
        shutil.copy(p, os.path.join(out_dmar, m))
    if i % 20 != 0:
        continue
    tables = []
    for name in ("dmar.dat", "apic.dat", "mcfg.dat", "hpet.dat"):
        p = os.path.join(corpus, m, name)
        if os.path.exists(p):
            tables.append(open(p, "rb").read())
    for rev in (0, 2):
        img = bytearray(0x100)
        addrs = []
        at = 0x100
        for t in tables:
            addrs.append(at)
            at += (len(t) + 15) & ~15
        entry = "<Q" if rev else "<I"
        root = sdt(b"XSDT" if rev else b"RSDT", b"".join(struct.pack(entry, a) for a in addrs + [0]))
        rsdp = bytearray(b"RSD PTR " + b"\0" + b"BOCHS " + bytes([rev]) + struct.pack("<I", 0x40))
        if rev:
            rsdp += struct.pack("<IQ", 36, 0x40) + b"\0\0\0\0"
        rsdp[8] = (-sum(rsdp[:20])) & 0xFF
        if rev:
            fix(rsdp, 32)
        img[0:len(rsdp)] = rsdp
        img[0x40:0x40 + len(root)] = root
        for a, t in zip(addrs, tables):
            if len(img) < a + len(t):
                img += bytes(a + len(t) - len(img))
            img[a:a + len(t)] = t
        open(os.path.join(out_walk, f"{m}.rev{rev}"), "wb").write(img)
        n += 1
print(f"dmar seeds: {len(os.listdir(out_dmar))}, table_walk seeds: {n}")
