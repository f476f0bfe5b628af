//! IDENTIFY DEVICE data (`ata_id_*` in Linux's `ata.h`): capacity, sector size, strings.

use super::*;

/// What IDENTIFY DEVICE said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identify {
    /// Addressable sectors (words 100-103 with LBA48, else 60-61).
    pub sectors: u64,
    /// Model (words 27-46).
    pub model: String,
    /// Serial number (words 10-19).
    pub serial: String,
    /// Firmware revision (words 23-26).
    pub firmware: String,
    /// 48-bit LBA supported (word 83 bit 10).
    pub lba48: bool,
    /// Logical sector size (word 106 bit 12 → words 117-118, else 512).
    pub sector_size: usize,
    /// Native Command Queuing supported (word 76 bit 8).
    pub ncq: bool,
    /// NCQ queue depth (word 75 bits 4:0, plus one); 1 without NCQ.
    pub queue_depth: usize,
}

fn ata_string(id: &[u8], first_word: usize, words: usize) -> String {
    // Each word holds two characters, the first in its high byte.
    let mut s = String::new();
    for w in first_word..first_word + words {
        for b in [id[2 * w + 1], id[2 * w]] {
            s.push(if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            });
        }
    }
    String::from(s.trim())
}

/// Parses the 512 bytes of IDENTIFY DEVICE data.
pub fn parse_identify(id: &[u8; 512]) -> Identify {
    let word = |w: usize| u16::from_le_bytes([id[2 * w], id[2 * w + 1]]) as u64;
    let lba48 = word(83) & (1 << 10) != 0;
    let sectors = if lba48 {
        word(100) | word(101) << 16 | word(102) << 32 | word(103) << 48
    } else {
        word(60) | word(61) << 16
    };
    let w106 = word(106);
    let sector_size = if w106 & 0xc000 == 0x4000 && w106 & (1 << 12) != 0 {
        ((word(117) | word(118) << 16) * 2) as usize
    } else {
        512
    };
    // Word 76 of 0 or 0xffff means "not reported" (as Linux's ata_id_has_ncq).
    let w76 = word(76);
    let ncq = w76 != 0 && w76 != 0xffff && w76 & (1 << 8) != 0;
    let queue_depth = if ncq {
        (word(75) & 0x1f) as usize + 1
    } else {
        1
    };
    Identify {
        ncq,
        queue_depth,
        sectors,
        model: ata_string(id, 27, 20),
        serial: ata_string(id, 10, 10),
        firmware: ata_string(id, 23, 4),
        lba48,
        sector_size,
    }
}
