//! Interrupt remapping formats (VT-d spec chapter 5 and §9.10): the interrupt
//! remapping table address register, interrupt remapping table entries (IRTEs),
//! remappable-format MSI address/data and IO-APIC redirection entries, the
//! interrupt-entry-cache (IEC) invalidation descriptor, and a per-unit IRTE
//! allocator that remembers which requester owns each entry.
//!
//! QEMU 7.2 notes (hw-facts 4.12, 7.1): under TCG EIM is off, so destinations are
//! xAPIC IDs in IRTE bits 47:40; compatibility-format MSIs pass even with remapping
//! on because GCMD.CFI is not implemented; IR faults are not recorded in the fault
//! registers (the MSI is dropped); there is no IRTE cache, so IEC invalidations are
//! only forwarded to KVM. Real hardware caches IRTEs, hence the invalidation here.

use alloc::vec::Vec;
use core::fmt;

/// IRTA.EIME (bit 11): x2APIC (32-bit destination) mode. Never set under TCG.
pub const IRTA_EIME: u64 = 1 << 11;
/// IRTA.S field mask (bits 3:0): the table has 2^(S+1) entries.
pub const IRTA_S_MASK: u64 = 0xf;
/// Size of one IRTE in bytes.
pub const IRTE_SIZE: u64 = 16;
/// Entries in a one-page table (S = 7): 4096 / 16.
pub const ONE_PAGE_ENTRIES: u16 = 256;

/// IRTA register value (§11.4.10.1) for a 4 KiB-aligned table of `2^(s+1)` entries,
/// xAPIC mode (EIME = 0). `s` is clamped to 15 (65,536 entries).
pub fn irta_value(table: u64, s: u8, x2apic: bool) -> u64 {
    (table & !0xfff) | if x2apic { IRTA_EIME } else { 0 } | (s.min(15) as u64)
}

/// Number of entries an IRTA value describes.
pub fn irta_entries(irta: u64) -> u32 {
    1 << ((irta & IRTA_S_MASK) + 1)
}

/// Source validation of an IRTE (SVT, SQ and SID fields, §9.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceValidation {
    /// SVT = 00: any requester may use the entry. Never used for devices here.
    None,
    /// SVT = 01: the request's source-id must equal `sid`, ignoring function bits
    /// per `sq` (0: all 16 bits; 1: ignore bit 2; 2: ignore bits 2:1; 3: bits 2:0).
    Requester {
        /// Owning source-id.
        sid: u16,
        /// Source-id qualifier.
        sq: u8,
    },
    /// SVT = 10: the request's bus must be in `start..=end` (SID bits 15:8 = start
    /// bus, 7:0 = end bus, as the spec and Linux's `set_msi_sid` have it; QEMU 7.2
    /// reads the two halves the other way round).
    Bus {
        /// First bus.
        start: u8,
        /// Last bus.
        end: u8,
    },
}

impl SourceValidation {
    fn encode(self) -> u64 {
        match self {
            SourceValidation::None => 0,
            SourceValidation::Requester { sid, sq } => {
                1u64 << 18 | ((sq & 3) as u64) << 16 | sid as u64
            }
            SourceValidation::Bus { start, end } => 2u64 << 18 | (start as u64) << 8 | end as u64,
        }
    }

    fn decode(hi: u64) -> Option<Self> {
        let sid = hi as u16;
        let sq = ((hi >> 16) & 3) as u8;
        match (hi >> 18) & 3 {
            0 => Some(SourceValidation::None),
            1 => Some(SourceValidation::Requester { sid, sq }),
            2 => Some(SourceValidation::Bus {
                start: (sid >> 8) as u8,
                end: sid as u8,
            }),
            _ => None,
        }
    }

    /// Whether a request from `sid` passes.
    pub fn allows(self, req: u16) -> bool {
        match self {
            SourceValidation::None => true,
            SourceValidation::Requester { sid, sq } => {
                let mask: u16 = [0xffff, 0xfffb, 0xfff9, 0xfff8][(sq & 3) as usize];
                sid & mask == req & mask
            }
            SourceValidation::Bus { start, end } => {
                let bus = (req >> 8) as u8;
                (start..=end).contains(&bus)
            }
        }
    }
}

/// Delivery mode (IRTE bits 7:5), as in the MSI data register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// 000.
    Fixed,
    /// 001.
    LowestPriority,
    /// 010.
    Smi,
    /// 100.
    Nmi,
    /// 101.
    Init,
    /// 111.
    ExtInt,
}

impl DeliveryMode {
    /// The 3-bit code.
    pub fn code(self) -> u8 {
        match self {
            DeliveryMode::Fixed => 0,
            DeliveryMode::LowestPriority => 1,
            DeliveryMode::Smi => 2,
            DeliveryMode::Nmi => 4,
            DeliveryMode::Init => 5,
            DeliveryMode::ExtInt => 7,
        }
    }

    /// From a 3-bit code; 3 and 6 are reserved.
    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            7 => DeliveryMode::ExtInt,
            _ => return None,
        })
    }
}

/// A remapped-format interrupt remapping table entry (§9.10, IM = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Irte {
    /// P (bit 0).
    pub present: bool,
    /// FPD (bit 1): suppress recording of qualified faults for this entry.
    pub fpd: bool,
    /// DM (bit 2): destination mode, false = physical, true = logical.
    pub logical: bool,
    /// RH (bit 3): redirection hint (lowest-priority among the destinations).
    pub redirection_hint: bool,
    /// TM (bit 4): false = edge, true = level.
    pub level: bool,
    /// DLM (bits 7:5).
    pub delivery: DeliveryMode,
    /// V (bits 23:16).
    pub vector: u8,
    /// DST (bits 63:32). In xAPIC mode (EIME = 0) only bits 15:8 are the APIC ID;
    /// use [`Irte::xapic_dest`].
    pub dest: u32,
    /// SVT/SQ/SID (bits 83:64).
    pub source: SourceValidation,
}

impl Irte {
    /// A present, fixed, physical, edge-triggered entry for `vector` on xAPIC
    /// `apic_id`, usable only by requester `sid` (full 16-bit match).
    pub fn msi(vector: u8, apic_id: u8, sid: u16) -> Irte {
        Irte {
            present: true,
            fpd: false,
            logical: false,
            redirection_hint: false,
            level: false,
            delivery: DeliveryMode::Fixed,
            vector,
            dest: Self::xapic_dest(apic_id),
            source: SourceValidation::Requester { sid, sq: 0 },
        }
    }

    /// The DST field for xAPIC `apic_id`: bits 15:8 (IRTE bits 47:40).
    pub const fn xapic_dest(apic_id: u8) -> u32 {
        (apic_id as u32) << 8
    }

    /// The xAPIC destination the unit uses when EIME = 0.
    pub fn xapic_id(&self) -> u8 {
        (self.dest >> 8) as u8
    }

    /// The two qwords as stored in the table.
    pub fn encode(&self) -> [u64; 2] {
        let lo = self.present as u64
            | (self.fpd as u64) << 1
            | (self.logical as u64) << 2
            | (self.redirection_hint as u64) << 3
            | (self.level as u64) << 4
            | (self.delivery.code() as u64) << 5
            | (self.vector as u64) << 16
            | (self.dest as u64) << 32;
        [lo, self.source.encode()]
    }

    /// Decodes a table entry. `Err` names the reserved field that is set (fault
    /// reason 0x24 for a present entry). `x2apic` false checks the xAPIC-mode
    /// reserved destination bits (39:32 and 63:48).
    pub fn decode(raw: [u64; 2], x2apic: bool) -> Result<Irte, &'static str> {
        let [lo, hi] = raw;
        if lo & 0x7000 != 0 {
            return Err("bits 14:12");
        }
        if lo & (1 << 15) != 0 {
            return Err("IM (posted interrupts not supported)");
        }
        if lo & 0xff00_0000 != 0 {
            return Err("bits 31:24");
        }
        if !x2apic && lo & 0xffff_00ff_0000_0000 != 0 {
            return Err("destination bits outside 15:8 in xAPIC mode");
        }
        if hi >> 20 != 0 {
            return Err("bits 127:84");
        }
        let delivery = DeliveryMode::from_code(((lo >> 5) & 7) as u8).ok_or("delivery mode")?;
        let source = SourceValidation::decode(hi).ok_or("SVT = 11")?;
        Ok(Irte {
            present: lo & 1 != 0,
            fpd: lo & 2 != 0,
            logical: lo & 4 != 0,
            redirection_hint: lo & 8 != 0,
            level: lo & 16 != 0,
            delivery,
            vector: (lo >> 16) as u8,
            dest: (lo >> 32) as u32,
            source,
        })
    }
}

impl fmt::Display for Irte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.present {
            return write!(f, "not present");
        }
        write!(
            f,
            "vector {:#04x} -> apic {} ({}, {:?}, {}{})",
            self.vector,
            self.xapic_id(),
            if self.logical { "logical" } else { "physical" },
            self.delivery,
            if self.level { "level" } else { "edge" },
            if self.fpd { ", faults suppressed" } else { "" }
        )?;
        match self.source {
            SourceValidation::None => write!(f, ", any source"),
            SourceValidation::Requester { sid, sq } => write!(
                f,
                ", source {:02x}:{:02x}.{}{}",
                sid >> 8,
                (sid >> 3) & 0x1f,
                sid & 7,
                if sq != 0 {
                    " (function bits masked)"
                } else {
                    ""
                }
            ),
            SourceValidation::Bus { start, end } => {
                write!(f, ", buses {start:02x}..={end:02x}")
            }
        }
    }
}

/// MSI address bit 4: interrupt format, 1 = remappable (§5.1.2.2).
pub const MSI_ADDR_REMAPPABLE: u32 = 1 << 4;
/// MSI address bit 3: SHV, subhandle valid (the data's low 16 bits are added to
/// the handle).
pub const MSI_ADDR_SHV: u32 = 1 << 3;

/// A remappable-format MSI/MSI-X message (§5.1.2.2): address 0xFEE0_0000 with
/// handle[14:0] in bits 19:5, handle[15] in bit 2, bit 4 set, and SHV in bit 3 when
/// a subhandle is in the data's low 16 bits (multi-message MSI).
pub fn remappable_msi(handle: u16, subhandle: Option<u16>) -> (u64, u32) {
    // exercise(irq-remap): begin
    let mut addr = 0xfee0_0000u32
        | ((handle as u32) & 0x7fff) << 5
        | ((handle as u32) >> 15) << 2
        | MSI_ADDR_REMAPPABLE;
    let data = match subhandle {
        Some(s) => {
            addr |= MSI_ADDR_SHV;
            s as u32
        }
        None => 0,
    };
    (addr as u64, data)
    // exercise(irq-remap): stub
    // let _ = (handle, subhandle);
    // todo!("exercise irq-remap: the remappable-format MSI address and data")
    // exercise(irq-remap): end
}

/// The interrupt index a remappable MSI selects (handle, plus the subhandle when
/// SHV), or `None` for a compatibility-format one.
pub fn msi_index(addr: u64, data: u32) -> Option<u32> {
    let a = addr as u32;
    if a & MSI_ADDR_REMAPPABLE == 0 {
        return None;
    }
    let handle = ((a >> 5) & 0x7fff) | ((a >> 2) & 1) << 15;
    let sub = if a & MSI_ADDR_SHV != 0 {
        data & 0xffff
    } else {
        0
    };
    Some(handle + sub)
}

/// A remappable-format IO-APIC redirection table entry (§5.1.5.1): handle[14:0]
/// in bits 63:49, format bit 48 = 1, handle[15] in bit 11, mask 16, trigger 15,
/// polarity 13, and the vector in 7:0, which must equal the IRTE's vector (the
/// IO-APIC uses it for EOI matching on level interrupts).
pub fn ioapic_rte(handle: u16, vector: u8, level: bool, active_low: bool, masked: bool) -> u64 {
    // exercise(irq-remap): begin
    ((handle as u64) & 0x7fff) << 49
        | 1 << 48
        | (masked as u64) << 16
        | (level as u64) << 15
        | (active_low as u64) << 13
        | ((handle as u64) >> 15) << 11
        | vector as u64
    // exercise(irq-remap): stub
    // let _ = (handle, vector, level, active_low, masked);
    // todo!("exercise irq-remap: the remappable-format IO-APIC redirection entry")
    // exercise(irq-remap): end
}

/// An interrupt-entry-cache invalidation (§6.5.2.7, descriptor type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IecInval {
    /// G = 0: every cached IRTE.
    Global,
    /// G = 1: entries `index .. index + 2^im` (index aligned to 2^im).
    Index {
        /// First interrupt index.
        index: u16,
        /// Index mask (0..=31, QEMU honours up to the table size).
        im: u8,
    },
}

impl IecInval {
    /// The 128-bit descriptor: type 4, G bit 4, IM bits 31:27, IIDX bits 47:32.
    pub fn descriptor(&self) -> [u64; 2] {
        match *self {
            IecInval::Global => [4, 0],
            IecInval::Index { index, im } => [
                4 | 1 << 4 | ((im & 0x1f) as u64) << 27 | (index as u64) << 32,
                0,
            ],
        }
    }
}

/// Who owns a block of IRTEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrteBlock {
    /// First index (the handle).
    pub index: u16,
    /// Entries (a power of two: multi-message MSI uses subhandles 0..count).
    pub count: u16,
    /// Requester the entries are validated against.
    pub owner: u16,
}

/// Allocation errors of [`IrteAllocator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrteError {
    /// No free aligned block of that size.
    Exhausted,
    /// Count zero, not a power of two, or larger than the table.
    BadCount(u16),
    /// No block starts at this index.
    NotAllocated(u16),
    /// The index is allocated to another requester.
    NotOwner {
        /// Index.
        index: u16,
        /// Its owner.
        owner: u16,
    },
}

impl fmt::Display for IrteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrteError::Exhausted => write!(f, "interrupt remapping table full"),
            IrteError::BadCount(n) => write!(f, "{n} entries: not a power of two in the table"),
            IrteError::NotAllocated(i) => write!(f, "IRTE {i} is not allocated"),
            IrteError::NotOwner { index, owner } => {
                write!(f, "IRTE {index} belongs to source-id {owner:#06x}")
            }
        }
    }
}

/// Allocates naturally aligned blocks of IRTEs (Linux's `alloc_irte` does the
/// same, so a multi-message MSI's subhandles stay inside one block).
#[derive(Debug, Clone)]
pub struct IrteAllocator {
    size: u16,
    blocks: Vec<IrteBlock>,
}

impl IrteAllocator {
    /// A table of `size` entries.
    pub fn new(size: u16) -> Self {
        IrteAllocator {
            size,
            blocks: Vec::new(),
        }
    }

    /// Table size.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// `count` entries for requester `owner`, lowest free aligned block first.
    pub fn alloc(&mut self, owner: u16, count: u16) -> Result<u16, IrteError> {
        if count == 0 || !count.is_power_of_two() || count > self.size {
            return Err(IrteError::BadCount(count));
        }
        let mut at: u32 = 0;
        while at + count as u32 <= self.size as u32 {
            let end = at + count as u32;
            let clash = self
                .blocks
                .iter()
                .find(|b| (b.index as u32) < end && at < b.index as u32 + b.count as u32);
            match clash {
                None => {
                    let b = IrteBlock {
                        index: at as u16,
                        count,
                        owner,
                    };
                    self.blocks.push(b);
                    return Ok(b.index);
                }
                Some(b) => {
                    let past = b.index as u32 + b.count as u32;
                    at = past.div_ceil(count as u32) * count as u32;
                }
            }
        }
        Err(IrteError::Exhausted)
    }

    /// The block starting at `index`.
    pub fn block(&self, index: u16) -> Option<IrteBlock> {
        self.blocks.iter().copied().find(|b| b.index == index)
    }

    /// The block containing `index`.
    pub fn block_containing(&self, index: u16) -> Option<IrteBlock> {
        self.blocks
            .iter()
            .copied()
            .find(|b| (b.index..b.index.saturating_add(b.count)).contains(&index))
    }

    /// Frees the block starting at `index`; `owner` must match.
    pub fn free(&mut self, index: u16, owner: u16) -> Result<IrteBlock, IrteError> {
        let i = self
            .blocks
            .iter()
            .position(|b| b.index == index)
            .ok_or(IrteError::NotAllocated(index))?;
        if self.blocks[i].owner != owner {
            return Err(IrteError::NotOwner {
                index,
                owner: self.blocks[i].owner,
            });
        }
        Ok(self.blocks.swap_remove(i))
    }

    /// Allocated blocks, lowest index first.
    pub fn blocks(&self) -> Vec<IrteBlock> {
        let mut v = self.blocks.clone();
        v.sort_by_key(|b| b.index);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irte_fields_sit_where_section_9_10_puts_them() {
        let e = Irte::msi(0x41, 3, 0x0008);
        let [lo, hi] = e.encode();
        assert_eq!(lo, 0x0000_0300_0041_0001);
        assert_eq!(hi, 0x0004_0008, "SVT = 01, SQ = 00, SID = 00:01.0");
        assert_eq!(Irte::decode([lo, hi], false), Ok(e));
        let l = Irte {
            level: true,
            logical: true,
            redirection_hint: true,
            fpd: true,
            delivery: DeliveryMode::LowestPriority,
            ..e
        };
        assert_eq!(l.encode()[0] & 0xff, 0b0011_1111);
        assert_eq!(Irte::decode(l.encode(), false), Ok(l));
        // Reserved fields.
        assert!(Irte::decode([lo | 1 << 13, hi], false).is_err());
        assert!(Irte::decode([lo | 1 << 15, hi], false).is_err());
        assert!(Irte::decode([lo | 1 << 32, hi], false).is_err());
        assert!(Irte::decode([lo | 1 << 32, hi], true).is_ok());
        assert!(Irte::decode([lo, hi | 1 << 20], false).is_err());
        assert!(Irte::decode([lo, hi | 3 << 18], false).is_err());
        assert_eq!(
            std::format!("{e}"),
            "vector 0x41 -> apic 3 (physical, Fixed, edge), source 00:01.0"
        );
    }

    #[test]
    fn source_validation_masks_and_bus_ranges() {
        let r = SourceValidation::Requester { sid: 0x0108, sq: 0 };
        assert!(r.allows(0x0108) && !r.allows(0x0109) && !r.allows(0x0010));
        let f = SourceValidation::Requester { sid: 0x0108, sq: 3 };
        assert!(f.allows(0x010f) && !f.allows(0x0110));
        let b = SourceValidation::Bus { start: 2, end: 4 };
        assert_eq!(b.encode(), 2 << 18 | 0x0204);
        assert!(b.allows(0x0300) && b.allows(0x04ff) && !b.allows(0x0500) && !b.allows(0x0108));
    }

    #[test]
    fn remappable_msi_address_carries_the_handle() {
        let (a, d) = remappable_msi(5, None);
        assert_eq!((a, d), (0xfee0_00b0, 0));
        assert_eq!(msi_index(a, 0x1234), Some(5), "no SHV: data ignored");
        let (a, d) = remappable_msi(0x8003, Some(2));
        assert_eq!(a, 0xfee0_007c, "handle bit 15 in address bit 2, SHV bit 3");
        assert_eq!(msi_index(a, d), Some(0x8005));
        assert_eq!(msi_index(0xfee0_0000, 0x41), None, "compatibility format");
    }

    #[test]
    fn ioapic_rte_and_iec_descriptor_encodings() {
        let r = ioapic_rte(0x8001, 0x30, true, true, false);
        assert_eq!(r >> 49, 1);
        assert_eq!(r >> 48 & 1, 1);
        assert_eq!(r >> 11 & 1, 1);
        assert_eq!(r & 0xffff, 0xa830);
        assert_eq!(IecInval::Global.descriptor(), [4, 0]);
        assert_eq!(
            IecInval::Index { index: 7, im: 1 }.descriptor(),
            [0x0000_0007_0800_0014, 0]
        );
    }

    #[test]
    fn allocator_aligns_blocks_and_checks_owners() {
        let mut a = IrteAllocator::new(16);
        assert_eq!(a.alloc(0x08, 1), Ok(0));
        assert_eq!(a.alloc(0x10, 4), Ok(4), "aligned to its size");
        assert_eq!(a.alloc(0x08, 1), Ok(1));
        assert_eq!(a.alloc(0x18, 8), Ok(8));
        assert_eq!(a.alloc(0x18, 4), Err(IrteError::Exhausted));
        assert_eq!(a.alloc(0x18, 3), Err(IrteError::BadCount(3)));
        assert_eq!(a.block_containing(6).map(|b| b.owner), Some(0x10));
        assert_eq!(
            a.free(4, 0x08),
            Err(IrteError::NotOwner {
                index: 4,
                owner: 0x10
            })
        );
        assert!(a.free(4, 0x10).is_ok());
        assert_eq!(a.free(4, 0x10), Err(IrteError::NotAllocated(4)));
        assert_eq!(a.alloc(0x20, 2), Ok(2));
        assert_eq!(a.alloc(0x20, 4), Ok(4), "the freed block is reused");
        assert_eq!(irta_entries(irta_value(0x5000, 7, false)), 256);
        assert_eq!(irta_value(0x5123, 7, true), 0x5807);
    }
}
