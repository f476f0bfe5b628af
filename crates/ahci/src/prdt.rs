//! The PRDT (libahci's `ahci_fill_sg`): the rules a mapped segment must meet to be one
//! PRD entry, and the `blk read --show-sg` trace of the entries a command carries.

use super::*;

/// PRD entries per command table: a table is then exactly 4 KiB (0x80 + 248 × 16).
pub const MAX_PRDT: usize = 248;
/// Bytes in a command table.
pub const CMD_TABLE_SIZE: usize = regs::CT_PRDT + MAX_PRDT * regs::PRD_SIZE;
/// Checks that every mapped segment can be one PRD entry, before anything is issued:
/// `Err((index, rule))` names the first segment that cannot (index [`MAX_PRDT`] when
/// there are too many) and the rule it breaks, worded to follow "segment N ...".
pub fn check_prdt(segs: &[DmaSegment], s64a: bool) -> Result<(), (usize, &'static str)> {
    // The rules of a PRD entry (AHCI 1.3.1 §4.2.3.3): at most `MAX_PRDT` entries in
    // a command table; a byte count that is even and not zero (DBC = count - 1 has
    // bit 0 set); a word-aligned address; at most `regs::PRD_MAX_BYTES` (4 MiB); and
    // without 64-bit addressing (`s64a` false) no byte above 4 GiB.
    // exercise(ahci-prdt): begin
    if segs.len() > MAX_PRDT {
        return Err((MAX_PRDT, "is beyond the PRDT's 248 entries"));
    }
    for (index, s) in segs.iter().enumerate() {
        let addr = s.addr.as_u64();
        if s.len == 0 || s.len % 2 != 0 {
            return Err((index, "has an odd or zero byte count (PRD DBC needs even)"));
        }
        if addr % 2 != 0 {
            return Err((index, "is not word aligned (PRD DBA bit 0 is reserved)"));
        }
        if s.len > regs::PRD_MAX_BYTES {
            return Err((index, "is larger than a PRD entry's 4 MiB"));
        }
        if !s64a && addr.saturating_add(s.len as u64 - 1) > u32::MAX as u64 {
            return Err((index, "is above 4 GiB and the HBA has no 64-bit addressing"));
        }
    }
    Ok(())
    // exercise(ahci-prdt): stub
    // let _ = (segs, s64a);
    // todo!("exercise ahci-prdt: check each segment against the PRD rules")
    // exercise(ahci-prdt): end
}

/// `blk read --show-sg` (block::trace): the command's mapped segments and its PRD
/// entries as the HBA will read them, back from the command table.
pub(crate) fn trace_prdt(segs: &[DmaSegment], table: &DmaPoolBlock) {
    use block::trace::{self, Kind};
    if !trace::armed() {
        return;
    }
    for s in segs {
        trace::record(Kind::Segment, s.addr.as_u64(), s.len as u64);
    }
    for i in 0..segs.len() {
        let at = regs::CT_PRDT + i * regs::PRD_SIZE;
        let dba = table.read::<u32>(at) as u64 | (table.read::<u32>(at + 4) as u64) << 32;
        let dbc = table.read::<u32>(at + 12) & regs::PRD_DBC_MASK;
        trace::record(Kind::Prd, dba, dbc as u64 + 1);
    }
    trace::finish();
}
