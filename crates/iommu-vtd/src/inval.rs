//! Invalidation requests (spec §6.5): what to invalidate, and how it is encoded for the
//! register interface (§6.5.1, §11.4.7.1, §11.4.8) and for queued invalidation
//! descriptors (§6.5.2).

use core::fmt;

/// Which invalidation interface a unit uses. QEMU ignores register-based requests once
/// QI is enabled (hw-facts 4.9), so a unit uses exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalMode {
    /// CCMD and IOTLB registers, one request at a time (§6.5.1).
    Register,
    /// The invalidation queue with wait descriptors (§6.5.2).
    Queued,
}

/// A context-cache invalidation request (§6.5.1.1, §6.5.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextInval {
    /// All context entries.
    Global,
    /// Entries tagged with a domain id.
    Domain(u16),
    /// One device (source-id, with function mask FM 0..3: ignore SID bits 2, 2:1, 2:0).
    Device {
        /// Domain id the entry was tagged with.
        did: u16,
        /// Source-id.
        sid: u16,
        /// Function mask.
        fm: u8,
    },
}

impl ContextInval {
    /// Granularity code: 1 global, 2 domain, 3 device.
    pub fn granularity(&self) -> u64 {
        match self {
            ContextInval::Global => 1,
            ContextInval::Domain(_) => 2,
            ContextInval::Device { .. } => 3,
        }
    }

    fn fields(&self) -> (u64, u64, u64) {
        match *self {
            ContextInval::Global => (0, 0, 0),
            ContextInval::Domain(d) => (d as u64, 0, 0),
            ContextInval::Device { did, sid, fm } => (did as u64, sid as u64, (fm & 3) as u64),
        }
    }

    /// CCMD register value with ICC set (§11.4.7.1).
    pub fn ccmd_value(&self) -> u64 {
        use crate::regs::ccmd::*;
        let (did, sid, fm) = self.fields();
        ICC | self.granularity() << CIRG_SHIFT | fm << FM_SHIFT | sid << SID_SHIFT | did
    }

    /// Context-cache invalidate descriptor, type 1 (§6.5.2.2).
    pub fn descriptor(&self) -> [u64; 2] {
        let (did, sid, fm) = self.fields();
        [
            1 | self.granularity() << 4 | did << 16 | sid << 32 | fm << 48,
            0,
        ]
    }
}

/// An IOTLB invalidation request (§6.5.1.2, §6.5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IotlbInval {
    /// Every IOTLB entry.
    Global,
    /// Entries of one domain.
    Domain(u16),
    /// 2^am pages at `addr` (which must be aligned to 2^am pages) of one domain.
    Page {
        /// Domain id.
        did: u16,
        /// First IOVA, aligned to `4 KiB << am`.
        addr: u64,
        /// Address mask: the number of low page-number bits to ignore.
        am: u8,
        /// Invalidation hint: only leaf entries changed, keep cached non-leaf entries.
        ih: bool,
    },
}

impl IotlbInval {
    /// Granularity code: 1 global, 2 domain, 3 page.
    pub fn granularity(&self) -> u64 {
        match self {
            IotlbInval::Global => 1,
            IotlbInval::Domain(_) => 2,
            IotlbInval::Page { .. } => 3,
        }
    }

    fn did(&self) -> u64 {
        match *self {
            IotlbInval::Global => 0,
            IotlbInval::Domain(d) | IotlbInval::Page { did: d, .. } => d as u64,
        }
    }

    /// IVA register value for a page-selective request (§11.4.8.2), else 0.
    pub fn iva_value(&self) -> u64 {
        match *self {
            IotlbInval::Page { addr, am, ih, .. } => {
                (addr & !0xfff) | if ih { crate::regs::iotlb::IVA_IH } else { 0 } | am as u64
            }
            _ => 0,
        }
    }

    /// IOTLB register value with IVT set; drains reads and writes when the unit
    /// supports it (CAP.DRD/DWD, §6.5.5).
    pub fn iotlb_value(&self, drain_reads: bool, drain_writes: bool) -> u64 {
        use crate::regs::iotlb::*;
        let mut v = IVT | self.granularity() << IIRG_SHIFT | self.did() << DID_SHIFT;
        if drain_reads {
            v |= DR;
        }
        if drain_writes {
            v |= DW;
        }
        v
    }

    /// IOTLB invalidate descriptor, type 2 (§6.5.2.3).
    pub fn descriptor(&self, drain_reads: bool, drain_writes: bool) -> [u64; 2] {
        let mut lo = 2 | self.granularity() << 4 | self.did() << 16;
        if drain_reads {
            lo |= 1 << 7;
        }
        if drain_writes {
            lo |= 1 << 6;
        }
        [lo, self.iva_value()]
    }

    /// The smallest request covering `[iova, iova + len)` of domain `did`: a
    /// page-selective one whose naturally aligned 2^am-page block covers the range
    /// when `psi` is supported and `am <= mamv` (§6.5.1.2: address must be aligned to
    /// the mask), else domain-selective.
    pub fn for_range(did: u16, iova: u64, len: u64, psi: bool, mamv: u8) -> IotlbInval {
        let first = iova >> 12;
        let last = (iova + len.max(1) - 1) >> 12;
        // Smallest am with first >> am == last >> am.
        let am = (64 - (first ^ last).leading_zeros()) as u8;
        if !psi || am > mamv {
            return IotlbInval::Domain(did);
        }
        IotlbInval::Page {
            did,
            addr: (first >> am) << am << 12,
            am,
            ih: false,
        }
    }
}

impl fmt::Display for IotlbInval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IotlbInval::Global => write!(f, "iotlb global"),
            IotlbInval::Domain(d) => write!(f, "iotlb domain {d}"),
            IotlbInval::Page { did, addr, am, .. } => {
                write!(f, "iotlb domain {did} pages {addr:#x} + {} KiB", 4u64 << am)
            }
        }
    }
}

/// Invalidation wait descriptor, type 5, with status write (SW) of `data` to the
/// 4-byte aligned `status_addr` (§6.5.2.8). Never sets IF together with SW: QEMU aborts
/// on that combination (hw-facts 4.10).
pub fn wait_descriptor(status_addr: u64, data: u32) -> [u64; 2] {
    [5 | 1 << 5 | (data as u64) << 32, status_addr & !3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_values_match_hw_facts_4_9() {
        assert_eq!(ContextInval::Global.ccmd_value(), 0xa000_0000_0000_0000);
        assert_eq!(
            IotlbInval::Global.iotlb_value(false, false),
            0x9000_0000_0000_0000
        );
        let d = ContextInval::Device {
            did: 3,
            sid: 0x0008,
            fm: 0,
        };
        assert_eq!(d.ccmd_value(), 0xe000_0000_0008_0003);
        assert_eq!(
            IotlbInval::Domain(7).iotlb_value(true, true),
            0xa003_0007_0000_0000
        );
    }

    #[test]
    fn descriptors_have_no_reserved_bits() {
        let cc = ContextInval::Device {
            did: 0xffff,
            sid: 0xffff,
            fm: 3,
        }
        .descriptor();
        assert_eq!(cc[0] & 0xFFFC_0000_0000_FFC0, 0);
        assert_eq!(cc[1], 0);
        let io = IotlbInval::Page {
            did: 0xffff,
            addr: 0xffff_f000,
            am: 18,
            ih: true,
        }
        .descriptor(true, true);
        assert_eq!(io[0] & 0xFFFF_FFFF_0000_FF00, 0);
        assert_eq!(io[1] & 0xF80, 0);
        let w = wait_descriptor(0x1004, 0xabcd);
        assert_eq!(w[0], 0x0000_abcd_0000_0025);
        assert_eq!(w[1], 0x1004);
    }

    #[test]
    fn range_mask_covers_and_is_aligned() {
        assert_eq!(
            IotlbInval::for_range(1, 0x5000, 0x1000, true, 18),
            IotlbInval::Page {
                did: 1,
                addr: 0x5000,
                am: 0,
                ih: false
            }
        );
        // Two pages straddling an 8 KiB boundary need a 16 KiB block.
        assert_eq!(
            IotlbInval::for_range(1, 0x7000, 0x2000, true, 18),
            IotlbInval::Page {
                did: 1,
                addr: 0x0,
                am: 4,
                ih: false
            }
        );
        assert_eq!(
            IotlbInval::for_range(1, 0x20_0000, 0x20_0000, true, 18),
            IotlbInval::Page {
                did: 1,
                addr: 0x20_0000,
                am: 9,
                ih: false
            }
        );
        assert_eq!(
            IotlbInval::for_range(2, 0, 1 << 40, true, 18),
            IotlbInval::Domain(2)
        );
        assert_eq!(
            IotlbInval::for_range(2, 0x1000, 0x1000, false, 18),
            IotlbInval::Domain(2)
        );
    }
}
