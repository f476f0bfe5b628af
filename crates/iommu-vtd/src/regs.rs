//! The VT-d register map (spec §11.4) and decoders for CAP/ECAP.
//!
//! Offsets are declared once here; the logic in [`crate::unit`] uses the names. The
//! IOTLB registers sit at `ECAP.IRO * 16` and the fault recording registers at
//! `CAP.FRO * 16` (spec §11.4.2, §11.4.3), so those offsets are computed from the
//! decoded capabilities.

use bitflags::bitflags;
use core::fmt;

/// Version register (32-bit, §11.4.1).
pub const VER: usize = 0x000;
/// Capability register (64-bit, §11.4.2).
pub const CAP: usize = 0x008;
/// Extended capability register (64-bit, §11.4.3).
pub const ECAP: usize = 0x010;
/// Global command register (32-bit, write-only, §11.4.4).
pub const GCMD: usize = 0x018;
/// Global status register (32-bit, §11.4.5).
pub const GSTS: usize = 0x01c;
/// Root table address register (64-bit, §11.4.6).
pub const RTADDR: usize = 0x020;
/// Context command register (64-bit, §11.4.7.1).
pub const CCMD: usize = 0x028;
/// Fault status register (32-bit, §11.4.7.2).
pub const FSTS: usize = 0x034;
/// Fault event control register (32-bit, §11.4.7.3). 32-bit accesses only (QEMU asserts).
pub const FECTL: usize = 0x038;
/// Fault event data register (32-bit).
pub const FEDATA: usize = 0x03c;
/// Fault event address register (32-bit).
pub const FEADDR: usize = 0x040;
/// Fault event upper address register (32-bit).
pub const FEUADDR: usize = 0x044;
/// Protected memory enable register (32-bit, §11.4.8.1).
pub const PMEN: usize = 0x064;
/// Invalidation queue head (64-bit, §11.4.9.1).
pub const IQH: usize = 0x080;
/// Invalidation queue tail (64-bit, §11.4.9.2).
pub const IQT: usize = 0x088;
/// Invalidation queue address (64-bit, §11.4.9.3).
pub const IQA: usize = 0x090;
/// Invalidation completion status (32-bit, §11.4.9.4).
pub const ICS: usize = 0x09c;
/// Invalidation event control (32-bit). 32-bit accesses only (QEMU asserts).
pub const IECTL: usize = 0x0a0;
/// Invalidation event data (32-bit).
pub const IEDATA: usize = 0x0a4;
/// Invalidation event address (32-bit).
pub const IEADDR: usize = 0x0a8;
/// Invalidation event upper address (32-bit).
pub const IEUADDR: usize = 0x0ac;
/// Interrupt remapping table address (64-bit, §11.4.10.1).
pub const IRTA: usize = 0x0b8;

/// Offset of IVA (invalidate address register) relative to the IOTLB block (§11.4.8.1).
pub const IVA_IN_IOTLB_BLOCK: usize = 0x0;
/// Offset of the IOTLB invalidate register relative to the IOTLB block (§11.4.8.2).
pub const IOTLB_IN_IOTLB_BLOCK: usize = 0x8;
/// Size of one fault recording register (128 bits, §11.4.14).
pub const FRCD_SIZE: usize = 16;

bitflags! {
    /// GCMD bits (§11.4.4). TE, QIE, IRE and CFI are persistent states; SRTP, SFL,
    /// WBF and SIRTP are one-shot commands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Gcmd: u32 {
        /// Translation enable.
        const TE = 1 << 31;
        /// Set root table pointer.
        const SRTP = 1 << 30;
        /// Set fault log.
        const SFL = 1 << 29;
        /// Enable advanced fault logging.
        const EAFL = 1 << 28;
        /// Write buffer flush.
        const WBF = 1 << 27;
        /// Queued invalidation enable.
        const QIE = 1 << 26;
        /// Interrupt remapping enable.
        const IRE = 1 << 25;
        /// Set interrupt remap table pointer.
        const SIRTP = 1 << 24;
        /// Compatibility format interrupt.
        const CFI = 1 << 23;
    }
}

bitflags! {
    /// GSTS bits (§11.4.5), one per GCMD bit.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Gsts: u32 {
        /// Translation enabled.
        const TES = 1 << 31;
        /// Root table pointer latched.
        const RTPS = 1 << 30;
        /// Fault log pointer latched.
        const FLS = 1 << 29;
        /// Advanced fault logging on.
        const AFLS = 1 << 28;
        /// Write buffer flush still in progress.
        const WBFS = 1 << 27;
        /// Queued invalidation enabled.
        const QIES = 1 << 26;
        /// Interrupt remapping enabled.
        const IRES = 1 << 25;
        /// Interrupt remap table pointer latched.
        const IRTPS = 1 << 24;
        /// Compatibility format interrupts pass.
        const CFIS = 1 << 23;
    }
}

impl Gsts {
    /// The status bits that mirror persistent GCMD states. §11.4.4: software must
    /// write them back unchanged with every GCMD write (GCMD is write-only).
    pub const PERSISTENT: Gsts = Gsts::TES
        .union(Gsts::QIES)
        .union(Gsts::IRES)
        .union(Gsts::CFIS);

    /// The GCMD value that keeps the current persistent states.
    pub fn persistent_cmd(self) -> Gcmd {
        Gcmd::from_bits_truncate(self.intersection(Self::PERSISTENT).bits())
    }
}

bitflags! {
    /// FSTS bits (§11.4.7.2). PFO, IQE, ICE, ITE are RW1C; PPF is derived from the
    /// fault recording registers' F bits; FRI is bits 15:8.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Fsts: u32 {
        /// Primary fault overflow (RW1C).
        const PFO = 1 << 0;
        /// Primary pending fault (read-only).
        const PPF = 1 << 1;
        /// Advanced fault overflow.
        const AFO = 1 << 2;
        /// Advanced pending fault.
        const APF = 1 << 3;
        /// Invalidation queue error (RW1C).
        const IQE = 1 << 4;
        /// Invalidation completion error (RW1C).
        const ICE = 1 << 5;
        /// Invalidation time-out error (RW1C).
        const ITE = 1 << 6;
        /// Fault record index, bits 15:8.
        const FRI = 0xff << 8;
    }
}

/// FECTL / IECTL interrupt mask (bit 31) and pending (bit 30), §11.4.7.3.
pub const ECTL_IM: u32 = 1 << 31;
/// Interrupt pending bit of FECTL / IECTL.
pub const ECTL_IP: u32 = 1 << 30;
/// ICS.IWC: invalidation wait descriptor complete (RW1C, §11.4.9.4).
pub const ICS_IWC: u32 = 1;

/// CCMD fields (§11.4.7.1).
pub mod ccmd {
    /// Invalidate context-cache: set to request, cleared by hardware when done.
    pub const ICC: u64 = 1 << 63;
    /// Shift of CIRG (request granularity, bits 62:61).
    pub const CIRG_SHIFT: u32 = 61;
    /// Shift of CAIG (actual granularity, bits 60:59).
    pub const CAIG_SHIFT: u32 = 59;
    /// Shift of FM (function mask, bits 33:32).
    pub const FM_SHIFT: u32 = 32;
    /// Shift of SID (bits 31:16).
    pub const SID_SHIFT: u32 = 16;
}

/// IOTLB invalidate register fields (§11.4.8.1).
pub mod iotlb {
    /// Invalidate IOTLB: set to request, cleared by hardware when done.
    pub const IVT: u64 = 1 << 63;
    /// Shift of IIRG (request granularity, bits 61:60).
    pub const IIRG_SHIFT: u32 = 60;
    /// Shift of IAIG (actual granularity, bits 58:57).
    pub const IAIG_SHIFT: u32 = 57;
    /// Drain reads.
    pub const DR: u64 = 1 << 49;
    /// Drain writes.
    pub const DW: u64 = 1 << 48;
    /// Shift of DID (bits 47:32).
    pub const DID_SHIFT: u32 = 32;
    /// IVA.IH: invalidation hint (only leaf entries changed), bit 6 (§11.4.8.2).
    pub const IVA_IH: u64 = 1 << 6;
}

/// IQA fields (§11.4.9.3).
pub mod iqa {
    /// Descriptor width: 1 = 256-bit (scalable mode only).
    pub const DW: u64 = 1 << 11;
    /// Queue size field mask: 2^(QS+8) 128-bit entries.
    pub const QS_MASK: u64 = 0x7;
}

/// PMEN.EPM: enable protected memory (§11.4.13).
pub const PMEN_EPM: u32 = 1 << 31;
/// PMEN.PRS: protected region status.
pub const PMEN_PRS: u32 = 1;

/// RTADDR.TTM (bits 11:10): 00 legacy mode, 01 scalable mode (§11.4.6).
pub const RTADDR_TTM_SHIFT: u32 = 10;

fn bits(v: u64, lo: u32, width: u32) -> u64 {
    (v >> lo) & ((1u64 << width) - 1)
}

/// Decoded capability register (§11.4.2), the fields Busmaster uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Raw value.
    pub raw: u64,
    /// ND: number of domain-id bits is 4 + 2*ND (ND=6 → 16 bits).
    pub nd: u8,
    /// Advanced fault logging.
    pub afl: bool,
    /// Required write-buffer flushing (§6.8).
    pub rwbf: bool,
    /// Protected low-memory region supported.
    pub plmr: bool,
    /// Protected high-memory region supported.
    pub phmr: bool,
    /// Caching mode: not-present entries may be cached (§6.1).
    pub cm: bool,
    /// SAGAW bitmap: bit 1 = 39-bit/3-level, bit 2 = 48-bit/4-level, bit 3 = 57-bit/5-level.
    pub sagaw: u8,
    /// Maximum guest address width (MGAW field + 1).
    pub mgaw: u8,
    /// Zero-length read.
    pub zlr: bool,
    /// Fault recording register offset in bytes (FRO * 16).
    pub fro: usize,
    /// Second-level large page support: bit 0 = 2 MiB, bit 1 = 1 GiB.
    pub sllps: u8,
    /// Page-selective invalidation supported.
    pub psi: bool,
    /// Number of fault recording registers (NFR + 1).
    pub nfr: u16,
    /// Maximum address mask value for page-selective invalidation.
    pub mamv: u8,
    /// Write draining.
    pub dwd: bool,
    /// Read draining.
    pub drd: bool,
}

impl Cap {
    /// Decodes a raw CAP value.
    pub fn decode(raw: u64) -> Cap {
        Cap {
            raw,
            nd: bits(raw, 0, 3) as u8,
            afl: bits(raw, 3, 1) != 0,
            rwbf: bits(raw, 4, 1) != 0,
            plmr: bits(raw, 5, 1) != 0,
            phmr: bits(raw, 6, 1) != 0,
            cm: bits(raw, 7, 1) != 0,
            sagaw: bits(raw, 8, 5) as u8,
            mgaw: bits(raw, 16, 6) as u8 + 1,
            zlr: bits(raw, 22, 1) != 0,
            fro: bits(raw, 24, 10) as usize * 16,
            sllps: bits(raw, 34, 4) as u8,
            psi: bits(raw, 39, 1) != 0,
            nfr: bits(raw, 40, 8) as u16 + 1,
            mamv: bits(raw, 48, 6) as u8,
            dwd: bits(raw, 54, 1) != 0,
            drd: bits(raw, 55, 1) != 0,
        }
    }

    /// Number of domain ids the unit supports: 2^(4 + 2*ND) (§11.4.2; ND=7 is reserved).
    pub fn domain_count(&self) -> u32 {
        1u32 << (4 + 2 * self.nd.min(6) as u32)
    }

    /// True if `levels` (3, 4 or 5) is in SAGAW. Level n corresponds to SAGAW bit n-2.
    pub fn supports_levels(&self, levels: u8) -> bool {
        (2..=5).contains(&levels) && self.sagaw & (1 << (levels - 2)) != 0
    }

    /// The deepest page-table level count that SAGAW offers and MGAW needs no more
    /// than; prefers 4 levels over 3 when both exist and MGAW > 39 (Linux does the
    /// same: the smallest AGAW covering the address width). `None` if SAGAW is empty
    /// (an IR-only unit, hw-facts 4.1 `dma-translation=off`).
    pub fn preferred_levels(&self) -> Option<u8> {
        let needed = if self.mgaw > 48 {
            5
        } else if self.mgaw > 39 {
            4
        } else {
            3
        };
        (needed..=5)
            .find(|&l| self.supports_levels(l))
            .or_else(|| (3..needed).rev().find(|&l| self.supports_levels(l)))
    }

    /// The largest page-table depth SAGAW offers (the "MSAGAW" a pass-through context
    /// entry's AW must name, §9.3); `None` if SAGAW is empty.
    pub fn max_levels(&self) -> Option<u8> {
        (3..=5).rev().find(|&l| self.supports_levels(l))
    }

    /// End of the fault recording registers: FRO + 16 * (NFR + 1).
    pub fn fault_regs_end(&self) -> usize {
        self.fro + self.nfr as usize * FRCD_SIZE
    }

    /// 2 MiB second-level pages supported.
    pub fn has_2m(&self) -> bool {
        self.sllps & 1 != 0
    }

    /// 1 GiB second-level pages supported.
    pub fn has_1g(&self) -> bool {
        self.sllps & 2 != 0
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cap {:#018x}: {} domain ids, mgaw {} bits, sagaw",
            self.raw,
            self.domain_count(),
            self.mgaw
        )?;
        for l in 3..=5u8 {
            if self.supports_levels(l) {
                write!(f, " {l}-level")?;
            }
        }
        if self.sagaw == 0 {
            write!(f, " none")?;
        }
        write!(f, ", large pages:")?;
        if self.has_2m() {
            write!(f, " 2M")?;
        }
        if self.has_1g() {
            write!(f, " 1G")?;
        }
        if self.sllps == 0 {
            write!(f, " none")?;
        }
        write!(
            f,
            ", {} fault record(s) at {:#x}, write-buffer flush {}, caching mode {}, page-selective invalidation {} (max mask {})",
            self.nfr,
            self.fro,
            if self.rwbf { "required" } else { "not needed" },
            if self.cm { "on" } else { "off" },
            if self.psi { "yes" } else { "no" },
            self.mamv
        )
    }
}

/// Decoded extended capability register (§11.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecap {
    /// Raw value.
    pub raw: u64,
    /// Page-walk coherency: when 0, software must flush CPU caches for every paging
    /// structure it writes (§6.8).
    pub c: bool,
    /// Queued invalidation supported.
    pub qi: bool,
    /// Device-TLB supported.
    pub dt: bool,
    /// Interrupt remapping supported.
    pub ir: bool,
    /// Extended interrupt mode (x2APIC).
    pub eim: bool,
    /// Pass-through (context TT=10) supported.
    pub pt: bool,
    /// Snoop control.
    pub sc: bool,
    /// IOTLB register offset in bytes (IRO * 16).
    pub iro: usize,
    /// Maximum handle mask value.
    pub mhmv: u8,
    /// PASID supported.
    pub pasid: bool,
    /// Scalable mode translation supported.
    pub smts: bool,
}

impl Ecap {
    /// Decodes a raw ECAP value.
    pub fn decode(raw: u64) -> Ecap {
        Ecap {
            raw,
            c: bits(raw, 0, 1) != 0,
            qi: bits(raw, 1, 1) != 0,
            dt: bits(raw, 2, 1) != 0,
            ir: bits(raw, 3, 1) != 0,
            eim: bits(raw, 4, 1) != 0,
            pt: bits(raw, 6, 1) != 0,
            sc: bits(raw, 7, 1) != 0,
            iro: bits(raw, 8, 10) as usize * 16,
            mhmv: bits(raw, 20, 4) as u8,
            pasid: bits(raw, 40, 1) != 0,
            smts: bits(raw, 43, 1) != 0,
        }
    }

    /// Offset of the IVA register.
    pub fn iva_offset(&self) -> usize {
        self.iro + IVA_IN_IOTLB_BLOCK
    }

    /// Offset of the IOTLB invalidate register.
    pub fn iotlb_offset(&self) -> usize {
        self.iro + IOTLB_IN_IOTLB_BLOCK
    }
}

impl fmt::Display for Ecap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "ecap {:#018x}: page-walk coherent {}, queued invalidation {}, interrupt remapping {} (x2apic {}), pass-through {}, device-tlb {}, snoop control {}, scalable mode {}, iotlb registers at {:#x}",
            self.raw,
            yn(self.c),
            yn(self.qi),
            yn(self.ir),
            yn(self.eim),
            yn(self.pt),
            yn(self.dt),
            yn(self.sc),
            yn(self.smts),
            self.iro
        )
    }
}

/// Bytes of register window a unit needs: the architectural registers (one page) plus
/// the IOTLB registers at ECAP.IRO and the fault recording registers at CAP.FRO, rounded
/// up to whole 4 KiB pages. The DRHD's size field may be smaller (Linux's `map_iommu`
/// grows the mapping the same way); map `max(drhd size, this)`.
pub fn register_window_size(cap: &Cap, ecap: &Ecap) -> usize {
    let end = cap
        .fault_regs_end()
        .max(ecap.iro + IOTLB_IN_IOTLB_BLOCK + 8)
        .max(4096);
    end.div_ceil(4096) * 4096
}

/// Offset of fault recording register `i` (low qword) for a unit with capabilities `cap`.
pub fn frcd_offset(cap: &Cap, i: u16) -> usize {
    cap.fro + i as usize * FRCD_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_default_cap_decodes_as_hw_facts_4_4() {
        let c = Cap::decode(0x00d2_008c_2226_0206);
        assert_eq!(c.nd, 6);
        assert_eq!(c.domain_count(), 65536);
        assert!(!c.rwbf && !c.cm && !c.afl && !c.zlr);
        assert_eq!(c.sagaw, 0b00010);
        assert!(c.supports_levels(3) && !c.supports_levels(4));
        assert_eq!(c.mgaw, 39);
        assert_eq!(c.fro, 0x220);
        assert_eq!(c.sllps, 0b0011);
        assert!(c.has_2m() && c.has_1g());
        assert!(c.psi);
        assert_eq!(c.nfr, 1);
        assert_eq!(c.mamv, 18);
        assert!(c.dwd && c.drd);
        assert_eq!(c.preferred_levels(), Some(3));
        let s = std::format!("{c}");
        assert!(s.contains("65536 domain ids"), "{s}");
        assert!(s.contains("mgaw 39 bits, sagaw 3-level,"), "{s}");
        assert!(s.contains("2M 1G"), "{s}");
        assert!(s.contains("1 fault record(s) at 0x220"), "{s}");
    }

    #[test]
    fn qemu_aw48_cap_offers_four_levels() {
        let c = Cap::decode(0x00d2_008c_222f_0606);
        assert_eq!(c.sagaw, 0b00110);
        assert_eq!(c.mgaw, 48);
        assert!(c.supports_levels(3) && c.supports_levels(4));
        assert_eq!(c.preferred_levels(), Some(4));
        assert!(std::format!("{c}").contains("sagaw 3-level 4-level"));
    }

    #[test]
    fn cm_and_dma_translation_off_variants() {
        assert!(Cap::decode(0x00d2_008c_2226_0286).cm);
        let off = Cap::decode(0x00d2_008c_2226_0006);
        assert_eq!(off.sagaw, 0);
        assert_eq!(off.preferred_levels(), None);
        assert!(!Cap::decode(0x0012_008c_2226_0206).drd);
    }

    #[test]
    fn qemu_default_ecap_decodes_as_hw_facts_4_4() {
        let e = Ecap::decode(0xf0_0f4a);
        assert!(!e.c);
        assert!(e.qi);
        assert!(!e.dt);
        assert!(e.ir);
        assert!(!e.eim);
        assert!(e.pt);
        assert!(!e.sc);
        assert_eq!(e.iro, 0xf0);
        assert_eq!(e.iva_offset(), 0xf0);
        assert_eq!(e.iotlb_offset(), 0xf8);
        assert_eq!(e.mhmv, 0xf);
        let s = std::format!("{e}");
        assert!(s.contains("page-walk coherent no"), "{s}");
        assert!(s.contains("queued invalidation yes"), "{s}");
        assert!(s.contains("iotlb registers at 0xf0"), "{s}");
        // Variants from the measured table.
        assert!(!Ecap::decode(0xf0_0f0a).pt);
        assert!(Ecap::decode(0xf0_0f4e).dt);
        assert!(Ecap::decode(0xf0_0fca).sc);
        assert!(Ecap::decode(0x4800_80f0_0f4a).smts);
        assert!(!Ecap::decode(0xf42).ir);
    }

    #[test]
    fn register_window_covers_iotlb_and_fault_registers() {
        // QEMU: everything in the first page.
        let (c, e) = (Cap::decode(0x00d2_008c_2226_0206), Ecap::decode(0xf0_0f4a));
        assert_eq!(register_window_size(&c, &e), 0x1000);
        // A client unit: FRO 0x400 with 8 records, IRO 0x500: still one page.
        let c = Cap::decode((7u64 << 40) | (0x40 << 24) | (0x26 << 16) | (1 << 9) | 1);
        let e = Ecap::decode(0x50 << 8);
        assert_eq!((c.fro, c.nfr, e.iro), (0x400, 8, 0x500));
        assert_eq!(register_window_size(&c, &e), 0x1000);
        // Fault records past the first page (FRO 0xFC0, 8 records → 0x1040).
        let c = Cap::decode((7u64 << 40) | (0xfc << 24) | (1 << 9));
        assert_eq!(c.fault_regs_end(), 0x1040);
        assert_eq!(register_window_size(&c, &e), 0x2000);
        // IOTLB registers at the very end of a page: IRO 0xFF0 + 16 fits exactly.
        let e = Ecap::decode(0xff << 8);
        assert_eq!(register_window_size(&Cap::decode(1 << 9), &e), 0x1000);
        let e = Ecap::decode(0x100 << 8);
        assert_eq!(register_window_size(&Cap::decode(1 << 9), &e), 0x2000);
    }

    #[test]
    fn max_levels_is_the_largest_sagaw() {
        assert_eq!(Cap::decode(0x00d2_008c_222f_0606).max_levels(), Some(4));
        assert_eq!(Cap::decode(0x00d2_008c_2226_0206).max_levels(), Some(3));
        assert_eq!(Cap::decode(0x00d2_008c_2226_0006).max_levels(), None);
    }

    #[test]
    fn persistent_bits_survive_into_gcmd() {
        let g = Gsts::TES | Gsts::RTPS | Gsts::QIES;
        assert_eq!(g.persistent_cmd(), Gcmd::TE | Gcmd::QIE);
    }
}
