//! QEMU's firmware configuration device (fw_cfg), used to receive the kernel
//! command line the runner passes with `-fw_cfg name=opt/busmaster/cmdline,...`.
//!
//! Legacy I/O interface (QEMU docs/specs/fw_cfg.rst): write a 16-bit selector to
//! port 0x510, read the item byte by byte from 0x511. Selector 0 returns the
//! signature "QEMU"; selector 0x19 the file directory, big-endian.

use alloc::string::String;
use alloc::vec::Vec;

use crate::arch::port::{inb, outw};

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const KEY_SIGNATURE: u16 = 0x0000;
const KEY_FILE_DIR: u16 = 0x0019;
/// Bound on directory entries we are willing to walk.
const MAX_FILES: u32 = 4096;

fn read_into(buf: &mut [u8]) {
    for b in buf {
        *b = inb(DATA);
    }
}

/// True when a QEMU fw_cfg device answers with its signature. On real hardware
/// the port floats (reads 0xFF), so the check fails and nothing else is read.
pub fn present() -> bool {
    outw(SELECTOR, KEY_SIGNATURE);
    let mut sig = [0u8; 4];
    read_into(&mut sig);
    &sig == b"QEMU"
}

/// Reads the named fw_cfg file, if the device and the file exist.
pub fn read_file(name: &str) -> Option<Vec<u8>> {
    if !present() {
        return None;
    }
    outw(SELECTOR, KEY_FILE_DIR);
    let mut count = [0u8; 4];
    read_into(&mut count);
    let count = u32::from_be_bytes(count).min(MAX_FILES);
    for _ in 0..count {
        // struct FWCfgFile { be32 size; be16 select; u16 reserved; char name[56]; }
        let mut entry = [0u8; 64];
        read_into(&mut entry);
        let size = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let select = u16::from_be_bytes([entry[4], entry[5]]);
        let raw_name = &entry[8..];
        let end = raw_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw_name.len());
        if &raw_name[..end] == name.as_bytes() {
            // Command lines are short; refuse anything absurd.
            let size = size.min(64 * 1024) as usize;
            let mut data = alloc::vec![0u8; size];
            outw(SELECTOR, select);
            read_into(&mut data);
            return Some(data);
        }
    }
    None
}

/// The kernel command line from `opt/busmaster/cmdline`, or "" without one.
pub fn cmdline() -> String {
    read_file("opt/busmaster/cmdline")
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
