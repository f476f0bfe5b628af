//! Root, context and second-level entry formats in legacy mode (RTADDR.TTM = 00),
//! spec §9.1 (root entry), §9.3 (context entry), §9.8 (second-level paging entries).

bitflags::bitflags! {
    /// Access permissions of a mapping (second-level R/W bits, §9.8).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Perm: u8 {
        /// Device may read.
        const READ = 1;
        /// Device may write.
        const WRITE = 2;
    }
}

/// Root entry present bit (§9.1).
pub const ROOT_P: u64 = 1;
/// Context entry present bit (§9.3).
pub const CTX_P: u64 = 1;
/// Context entry fault processing disable (§9.3).
pub const CTX_FPD: u64 = 1 << 1;
/// Shift of the context entry TT field (bits 3:2).
pub const CTX_TT_SHIFT: u32 = 2;
/// TT = 00: untranslated requests go through second-level translation.
pub const TT_SECOND_LEVEL: u64 = 0;
/// TT = 10: pass-through (needs ECAP.PT).
pub const TT_PASS_THROUGH: u64 = 2;
/// Shift of DID in the context entry's high qword (bits 23:8).
pub const CTX_DID_SHIFT: u32 = 8;
/// Address bits 63:12 of a root/context/paging entry pointer.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Second-level entry read bit.
pub const SL_R: u64 = 1 << 0;
/// Second-level entry write bit.
pub const SL_W: u64 = 1 << 1;
/// Second-level entry page-size bit: leaf at level 2 (2 MiB) or 3 (1 GiB).
pub const SL_PS: u64 = 1 << 7;

/// Context entry AW field for a table with `levels` levels: levels = AW + 2 (§9.3).
pub const fn aw_for_levels(levels: u8) -> u64 {
    (levels as u64).saturating_sub(2)
}

/// Address width covered by `levels` levels: 12 + 9 * levels (39 for 3, 48 for 4).
#[inline]
pub const fn agaw_bits(levels: u8) -> u32 {
    12 + 9 * levels as u32
}

/// Index into the table at `level` (1 = leaf page table) for `iova`.
#[inline]
pub const fn level_index(iova: u64, level: u8) -> u64 {
    (iova >> (12 + 9 * (level as u32 - 1))) & 0x1ff
}

/// Bytes mapped by one entry at `level` (4 KiB at level 1, 2 MiB at 2, 1 GiB at 3).
#[inline]
pub const fn level_size(level: u8) -> u64 {
    1u64 << (12 + 9 * (level as u32 - 1))
}

/// Encodes a legacy-mode context entry (lo, hi) (§9.3).
pub fn context_entry(slptptr: u64, tt: u64, levels: u8, did: u16) -> (u64, u64) {
    let lo = (slptptr & ADDR_MASK) | (tt << CTX_TT_SHIFT) | CTX_P;
    let hi = aw_for_levels(levels) | (did as u64) << CTX_DID_SHIFT;
    (lo, hi)
}

/// Encodes a second-level entry with permissions.
#[inline]
pub fn sl_entry(addr: u64, perm: Perm, large: bool) -> u64 {
    // Bits 51:12 hold the address (`ADDR_MASK`), bit 0 (`SL_R`) lets the device read,
    // bit 1 (`SL_W`) write, bit 7 (`SL_PS`) makes a level-2/3 entry a large leaf.
    // exercise(vtd-pagetables): begin
    let mut e = addr & ADDR_MASK;
    if perm.contains(Perm::READ) {
        e |= SL_R;
    }
    if perm.contains(Perm::WRITE) {
        e |= SL_W;
    }
    if large {
        e |= SL_PS;
    }
    e
    // exercise(vtd-pagetables): stub
    // let _ = (addr, perm, large);
    // todo!("exercise vtd-pagetables: encode a second-level entry")
    // exercise(vtd-pagetables): end
}

#[cfg(test)]
mod tests {
    use super::*;
    use hal::Bdf;

    #[test]
    fn bdf_and_sid() {
        // The requester ID is `hal::Bdf`'s (one BDF type for PCI and VT-d).
        let edu = Bdf::b(0, 1, 0);
        assert_eq!(edu.sid(), 0x0008);
        assert_eq!(Bdf::from_sid(0x0008), edu);
        assert_eq!(std::format!("{}", Bdf::b(0xff, 0x1f, 7).short()), "ff:1f.7");
    }

    #[test]
    fn context_entry_matches_hw_facts_4_15() {
        let (lo, hi) = context_entry(0x12_3000, TT_SECOND_LEVEL, 3, 5);
        assert_eq!(lo, 0x12_3001);
        assert_eq!(hi, 1 | 5 << 8);
        let (lo, hi) = context_entry(0, TT_PASS_THROUGH, 4, 1);
        assert_eq!(lo, 0b1001);
        assert_eq!(hi, 2 | 1 << 8);
    }

    #[test]
    fn second_level_entry_bits() {
        let rw = Perm::READ | Perm::WRITE;
        assert_eq!(sl_entry(0x1234_5000, rw, false), 0x1234_5003);
        assert_eq!(sl_entry(0x40_0000, Perm::READ, true), 0x40_0081);
        assert_eq!(sl_entry(0x9000, Perm::WRITE, false), 0x9002);
        // Bits outside 51:12 of the address never reach the entry.
        assert_eq!(sl_entry(0xfff0_0000_1234_5fff, rw, false), 0x1234_5003);
        assert_eq!(sl_entry(0x5000, Perm::empty(), false), 0x5000);
    }

    #[test]
    fn indices_and_sizes() {
        let iova = 0x0000_7f80_4020_3000u64;
        assert_eq!(level_index(iova, 1), 0x003);
        assert_eq!(level_index(iova, 2), 0x001);
        assert_eq!(level_index(iova, 3), 0x001);
        assert_eq!(level_index(iova, 4), 0x0ff);
        assert_eq!(level_size(2), 2 << 20);
        assert_eq!(agaw_bits(3), 39);
        assert_eq!(agaw_bits(4), 48);
    }
}
