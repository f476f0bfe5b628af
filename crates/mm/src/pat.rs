//! Page Attribute Table: our layout, the MSR value, and PTE encode/decode.
//!
//! Intel SDM Vol. 3A §13.12 ("Page Attribute Table"; §11.12 in editions before 2023).
//! A leaf paging entry selects one of eight PAT entries with three bits:
//! `index = PAT << 2 | PCD << 1 | PWT` (SDM Table 13-11 "Selection of PAT Entries with
//! PAT, PCD, and PWT Flags"). PWT is bit 3 and PCD bit 4 at every level; the PAT bit is
//! bit 7 in a 4 KiB PTE but bit 12 in a 2 MiB PDE or 1 GiB PDPTE, because bit 7 there is
//! the page-size (PS) bit (SDM §4.5, Tables 4-18/4-19/4-20).
//!
//! ## Our layout
//!
//! | entry | type | PAT PCD PWT | why |
//! |---|---|---|---|
//! | PA0 | WB  | 0 0 0 | power-on default, unchanged |
//! | PA1 | WT  | 0 0 1 | power-on default, unchanged |
//! | PA2 | UC- | 0 1 0 | power-on default, unchanged |
//! | PA3 | UC  | 0 1 1 | power-on default, unchanged |
//! | PA4 | WC  | 1 0 0 | framebuffers, write-combining BARs |
//! | PA5 | WP  | 1 0 1 | completeness (write-protect) |
//! | PA6 | UC- | 1 1 0 | duplicate, never produced by `encode` |
//! | PA7 | UC  | 1 1 1 | duplicate, never produced by `encode` |
//!
//! PA0–PA3 keep their reset values (SDM §13.12.4: the power-up value is
//! `0x0007_0406_0007_0406`), so mappings made before the MSR is written — by the
//! bootloader, with PWT/PCD only — mean the same thing after. Only the PAT bit reaches
//! the new types WC and WP.

use core::fmt;

use crate::paging::PageSize;

/// `IA32_PAT` MSR number (SDM Vol. 4, Table 2-2).
pub const IA32_PAT_MSR: u32 = 0x277;

/// PWT, bit 3 at every level.
pub const PWT: u64 = 1 << 3;
/// PCD, bit 4 at every level.
pub const PCD: u64 = 1 << 4;
/// PAT bit in a 4 KiB PTE.
pub const PAT_4K: u64 = 1 << 7;
/// PAT bit in a 2 MiB PDE / 1 GiB PDPTE (bit 7 is PS there).
pub const PAT_LARGE: u64 = 1 << 12;

/// A memory type reachable through the PAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheType {
    /// Write-back: normal RAM.
    WriteBack,
    /// Write-through.
    WriteThrough,
    /// Uncached, but an MTRR saying WC wins (Linux `_PAGE_CACHE_MODE_UC_MINUS`).
    UncachedMinus,
    /// Strong uncached: device registers (`ioremap` default).
    Uncached,
    /// Write-combining: framebuffers, prefetchable BARs.
    WriteCombining,
    /// Write-protect.
    WriteProtect,
}

impl CacheType {
    /// All types, in PAT-entry order of our layout.
    pub const ALL: [CacheType; 6] = [
        CacheType::WriteBack,
        CacheType::WriteThrough,
        CacheType::UncachedMinus,
        CacheType::Uncached,
        CacheType::WriteCombining,
        CacheType::WriteProtect,
    ];

    /// The memory-type encoding used in the PAT MSR and MTRRs (SDM Table 13-10).
    pub const fn memory_type(self) -> u8 {
        match self {
            CacheType::Uncached => 0x00,
            CacheType::WriteCombining => 0x01,
            CacheType::WriteThrough => 0x04,
            CacheType::WriteProtect => 0x05,
            CacheType::WriteBack => 0x06,
            CacheType::UncachedMinus => 0x07,
        }
    }

    /// Inverse of [`memory_type`](Self::memory_type); `None` for reserved encodings.
    pub const fn from_memory_type(t: u8) -> Option<Self> {
        Some(match t {
            0x00 => CacheType::Uncached,
            0x01 => CacheType::WriteCombining,
            0x04 => CacheType::WriteThrough,
            0x05 => CacheType::WriteProtect,
            0x06 => CacheType::WriteBack,
            0x07 => CacheType::UncachedMinus,
            _ => return None,
        })
    }

    /// Short name as Linux prints it (`/sys/kernel/debug/x86/pat_memtype_list`).
    pub const fn name(self) -> &'static str {
        match self {
            CacheType::WriteBack => "write-back",
            CacheType::WriteThrough => "write-through",
            CacheType::UncachedMinus => "uncached-minus",
            CacheType::Uncached => "uncached",
            CacheType::WriteCombining => "write-combining",
            CacheType::WriteProtect => "write-protect",
        }
    }
}

impl fmt::Display for CacheType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Our PAT layout, entry `i` at index `i`.
pub const PAT_LAYOUT: [CacheType; 8] = [
    CacheType::WriteBack,
    CacheType::WriteThrough,
    CacheType::UncachedMinus,
    CacheType::Uncached,
    CacheType::WriteCombining,
    CacheType::WriteProtect,
    CacheType::UncachedMinus,
    CacheType::Uncached,
];

/// The value the kernel writes to `IA32_PAT` (entry `i` in byte `i`):
/// `0x0007_0501_0007_0406`.
pub const PAT_MSR_VALUE: u64 = {
    let mut v = 0u64;
    let mut i = 0;
    while i < 8 {
        v |= (PAT_LAYOUT[i].memory_type() as u64) << (i * 8);
        i += 1;
    }
    v
};

/// The reset value of `IA32_PAT` (SDM §13.12.4), to recognise an unprogrammed PAT.
pub const PAT_MSR_RESET_VALUE: u64 = 0x0007_0406_0007_0406;

/// Decodes an `IA32_PAT` value into its eight entries (`None` for reserved encodings),
/// e.g. to print what the CPU actually has.
pub fn decode_msr(msr: u64) -> [Option<CacheType>; 8] {
    let mut out = [None; 8];
    for (i, o) in out.iter_mut().enumerate() {
        // Each entry is 3 bits wide in an 8-bit field; bits 3..7 are reserved.
        *o = CacheType::from_memory_type(((msr >> (i * 8)) & 0x7) as u8);
    }
    out
}

/// PAT index (0..=7) that selects `ct` in our layout.
pub const fn pat_index(ct: CacheType) -> u8 {
    match ct {
        CacheType::WriteBack => 0,
        CacheType::WriteThrough => 1,
        CacheType::UncachedMinus => 2,
        CacheType::Uncached => 3,
        CacheType::WriteCombining => 4,
        CacheType::WriteProtect => 5,
    }
}

/// Position of the PAT bit for a leaf of this size.
pub const fn pat_bit(size: PageSize) -> u64 {
    match size {
        PageSize::Size4K => PAT_4K,
        PageSize::Size2M | PageSize::Size1G => PAT_LARGE,
    }
}

/// All cache-selecting bits of a leaf entry of this size.
pub const fn cache_mask(size: PageSize) -> u64 {
    PWT | PCD | pat_bit(size)
}

/// The PWT/PCD/PAT bits to put in a leaf entry of `size` to get `ct`.
pub const fn encode(ct: CacheType, size: PageSize) -> u64 {
    let idx = pat_index(ct);
    let mut bits = 0;
    if idx & 1 != 0 {
        bits |= PWT;
    }
    if idx & 2 != 0 {
        bits |= PCD;
    }
    if idx & 4 != 0 {
        bits |= pat_bit(size);
    }
    bits
}

/// PAT index selected by a leaf entry of `size` (its PWT/PCD/PAT bits).
pub const fn index_of_entry(entry: u64, size: PageSize) -> u8 {
    let mut idx = 0;
    if entry & PWT != 0 {
        idx |= 1;
    }
    if entry & PCD != 0 {
        idx |= 2;
    }
    if entry & pat_bit(size) != 0 {
        idx |= 4;
    }
    idx
}

/// The cache type a leaf entry of `size` selects, assuming our PAT layout is loaded.
pub const fn decode(entry: u64, size: PageSize) -> CacheType {
    PAT_LAYOUT[index_of_entry(entry, size) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msr_value_is_the_documented_constant() {
        assert_eq!(PAT_MSR_VALUE, 0x0007_0501_0007_0406);
        // The low four entries equal the reset value's, so legacy PWT/PCD keep meaning.
        assert_eq!(
            PAT_MSR_VALUE & 0xffff_ffff,
            PAT_MSR_RESET_VALUE & 0xffff_ffff
        );
        let d = decode_msr(PAT_MSR_VALUE);
        for (i, t) in PAT_LAYOUT.iter().enumerate() {
            assert_eq!(d[i], Some(*t));
        }
        assert_eq!(decode_msr(0x02)[0], None, "encoding 2 is reserved");
    }

    #[test]
    fn encode_4k_uses_bit7_for_pat() {
        let k = PageSize::Size4K;
        assert_eq!(encode(CacheType::WriteBack, k), 0);
        assert_eq!(encode(CacheType::WriteThrough, k), 1 << 3);
        assert_eq!(encode(CacheType::UncachedMinus, k), 1 << 4);
        assert_eq!(encode(CacheType::Uncached, k), (1 << 4) | (1 << 3));
        assert_eq!(encode(CacheType::WriteCombining, k), 1 << 7);
        assert_eq!(encode(CacheType::WriteProtect, k), (1 << 7) | (1 << 3));
    }

    #[test]
    fn encode_2m_and_1g_use_bit12_for_pat_never_bit7() {
        for s in [PageSize::Size2M, PageSize::Size1G] {
            assert_eq!(encode(CacheType::WriteCombining, s), 1 << 12);
            assert_eq!(encode(CacheType::WriteProtect, s), (1 << 12) | (1 << 3));
            assert_eq!(encode(CacheType::Uncached, s), (1 << 4) | (1 << 3));
            for ct in CacheType::ALL {
                assert_eq!(encode(ct, s) & (1 << 7), 0, "{ct} would set PS");
            }
        }
    }

    #[test]
    fn decode_inverts_encode_and_ignores_other_bits() {
        for s in [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G] {
            for ct in CacheType::ALL {
                let e = encode(ct, s) | 0x8000_0000_1234_5003 & !cache_mask(s);
                assert_eq!(decode(e, s), ct, "{ct} {s:?}");
            }
        }
        // A 2 MiB entry: bit 7 is PS, not PAT, so it must not decode as WC.
        assert_eq!(decode(1 << 7, PageSize::Size2M), CacheType::WriteBack);
        // Bit 12 in a 4 KiB PTE is an address bit, not PAT.
        assert_eq!(decode(1 << 12, PageSize::Size4K), CacheType::WriteBack);
        // The duplicate entries PA6/PA7 decode as UC-/UC.
        assert_eq!(
            decode(PAT_4K | PCD, PageSize::Size4K),
            CacheType::UncachedMinus
        );
        assert_eq!(
            decode(PAT_LARGE | PCD | PWT, PageSize::Size2M),
            CacheType::Uncached
        );
    }

    #[test]
    fn memory_type_round_trip() {
        for ct in CacheType::ALL {
            assert_eq!(CacheType::from_memory_type(ct.memory_type()), Some(ct));
            assert_eq!(PAT_LAYOUT[pat_index(ct) as usize], ct);
        }
    }
}
