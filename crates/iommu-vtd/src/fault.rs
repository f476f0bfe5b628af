//! Fault recording registers decoded (spec §7.2.1, §11.4.14; reason codes from the
//! spec's Appendix "Non-recoverable fault reason encodings", hw-facts 4.11).

use core::fmt;
use hal::Bdf;

/// Fault reason code (FR, bits 103:96 of a fault recording register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultReason(pub u8);

impl FaultReason {
    /// Root entry not present.
    pub const ROOT_NOT_PRESENT: FaultReason = FaultReason(0x1);
    /// Context entry not present.
    pub const CONTEXT_NOT_PRESENT: FaultReason = FaultReason(0x2);
    /// Invalid context entry (AW/TT not supported, top table unreadable).
    pub const CONTEXT_INVALID: FaultReason = FaultReason(0x3);
    /// Input address above 2^AGAW.
    pub const ADDRESS_BEYOND_AGAW: FaultReason = FaultReason(0x4);
    /// Write to a non-writable (or not-present) page.
    pub const WRITE_DENIED: FaultReason = FaultReason(0x5);
    /// Read from a non-readable (or not-present) page.
    pub const READ_DENIED: FaultReason = FaultReason(0x6);
    /// Paging entry below the top level unreadable.
    pub const PAGING_ENTRY_UNREADABLE: FaultReason = FaultReason(0x7);
    /// Root table unreadable.
    pub const ROOT_TABLE_UNREADABLE: FaultReason = FaultReason(0x8);
    /// Context table unreadable.
    pub const CONTEXT_TABLE_UNREADABLE: FaultReason = FaultReason(0x9);
    /// Root entry reserved bits set.
    pub const ROOT_RESERVED: FaultReason = FaultReason(0xa);
    /// Context entry reserved bits set.
    pub const CONTEXT_RESERVED: FaultReason = FaultReason(0xb);
    /// Paging entry reserved bits set.
    pub const PAGING_RESERVED: FaultReason = FaultReason(0xc);
    /// Translation type blocked by the context entry.
    pub const TRANSLATION_TYPE_BLOCKED: FaultReason = FaultReason(0xd);
    /// Translated address falls in the interrupt range 0xFEEx_xxxx.
    pub const INTERRUPT_RANGE: FaultReason = FaultReason(0xe);
    /// Interrupt request with reserved fields set (e.g. address bits 63:32, data
    /// bits 31:16 with SHV).
    pub const IR_REQUEST_RESERVED: FaultReason = FaultReason(0x20);
    /// Interrupt index beyond the table size in IRTA.S.
    pub const IR_INDEX_OVERFLOW: FaultReason = FaultReason(0x21);
    /// IRTE not present.
    pub const IR_ENTRY_NOT_PRESENT: FaultReason = FaultReason(0x22);
    /// IRTE could not be read.
    pub const IR_TABLE_UNREADABLE: FaultReason = FaultReason(0x23);
    /// IRTE reserved fields set.
    pub const IR_ENTRY_RESERVED: FaultReason = FaultReason(0x24);
    /// Compatibility-format interrupt blocked (remapping on, GSTS.CFIS = 0).
    pub const IR_COMPAT_BLOCKED: FaultReason = FaultReason(0x25);
    /// Source-id validation failed: the requester does not own the IRTE.
    pub const IR_SOURCE_ID: FaultReason = FaultReason(0x26);
    /// Posted-interrupt descriptor could not be accessed.
    pub const IR_POSTED_DESCRIPTOR: FaultReason = FaultReason(0x27);

    /// An interrupt-remapping fault (0x20..=0x27): the record's FI field holds the
    /// interrupt index in bits 63:48 instead of a page address.
    pub fn is_interrupt_remapping(self) -> bool {
        (0x20..=0x27).contains(&self.0)
    }

    /// The reason in words.
    pub fn describe(self) -> &'static str {
        match self.0 {
            0x1 => "root entry not present",
            0x2 => "context entry not present",
            0x3 => "invalid context entry",
            0x4 => "address beyond the domain's address width",
            0x5 => "write to a page without write permission (or not present)",
            0x6 => "read from a page without read permission (or not present)",
            0x7 => "paging entry could not be read",
            0x8 => "root table could not be read",
            0x9 => "context table could not be read",
            0xa => "root entry has reserved bits set",
            0xb => "context entry has reserved bits set",
            0xc => "paging entry has reserved bits set",
            0xd => "translation type blocked by the context entry",
            0xe => "translated address in the interrupt address range",
            0x20 => "interrupt request with reserved fields set",
            0x21 => "interrupt index beyond the remapping table",
            0x22 => "interrupt remapping entry not present",
            0x23 => "interrupt remapping table could not be read",
            0x24 => "interrupt remapping entry has reserved fields set",
            0x25 => "compatibility-format interrupt blocked by remapping",
            0x26 => "interrupt from a requester the entry does not allow (source-id check)",
            0x27 => "posted-interrupt descriptor could not be read",
            0x58 => "scalable-mode PASID table entry fault",
            0x87 => "scalable-mode translation in the interrupt range",
            _ => "unknown fault reason",
        }
    }
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x} ({})", self.0, self.describe())
    }
}

/// F bit of a fault recording register (bit 127, i.e. bit 63 of the high qword), RW1C.
pub const FRCD_HI_F: u64 = 1 << 63;
/// T bit (bit 126): 1 = read request, 0 = write request.
pub const FRCD_HI_T: u64 = 1 << 62;
/// PP bit (bit 95): a PASID was present.
pub const FRCD_HI_PP: u64 = 1 << 31;

/// One decoded primary fault record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRecord {
    /// Index of the fault recording register it came from.
    pub index: u16,
    /// Requester.
    pub source: Bdf,
    /// Faulting page address (FI, bits 63:12).
    pub addr: u64,
    /// True for a write request (T = 0), false for a read.
    pub write: bool,
    /// Reason code.
    pub reason: FaultReason,
    /// PASID, if PP was set (QEMU writes junk into PV when PP = 0, hw-facts 4.11).
    pub pasid: Option<u32>,
}

impl FaultRecord {
    /// Decodes the two qwords of a fault recording register, or `None` if F is clear.
    pub fn decode(index: u16, lo: u64, hi: u64) -> Option<FaultRecord> {
        if hi & FRCD_HI_F == 0 {
            return None;
        }
        Some(FaultRecord {
            index,
            source: Bdf::from_sid(hi as u16),
            addr: lo & !0xfff,
            write: hi & FRCD_HI_T == 0,
            reason: FaultReason((hi >> 32) as u8),
            pasid: (hi & FRCD_HI_PP != 0).then_some(((hi >> 40) & 0xf_ffff) as u32),
        })
    }
}

impl FaultRecord {
    /// For an interrupt-remapping fault, the interrupt index (FI bits 63:48, spec
    /// §11.4.14); `None` for a DMA fault.
    pub fn interrupt_index(&self) -> Option<u16> {
        self.reason
            .is_interrupt_remapping()
            .then_some((self.addr >> 48) as u16)
    }
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.interrupt_index() {
            return write!(
                f,
                "IR fault: {} interrupt index {i}, reason {}",
                self.source.short(),
                self.reason
            );
        }
        write!(
            f,
            "DMAR fault: {} {} at {:#x}, reason {}",
            self.source.short(),
            if self.write { "write" } else { "read" },
            self.addr,
            self.reason
        )?;
        if let Some(p) = self.pasid {
            write!(f, " pasid {p:#x}")?;
        }
        Ok(())
    }
}

/// A fault-log rate limit (Linux's `ratelimit_state`, as `pr_err_ratelimited`
/// uses it for DMAR faults): at most `burst` messages per `interval` ticks,
/// the rest counted. A device retrying a blocked DMA raises fault after fault;
/// logging each one on a serial console from the interrupt handler would keep
/// the CPU there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    interval: u64,
    burst: u32,
    window_start: Option<u64>,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    /// `burst` messages per `interval` ticks (`burst` 0: never log).
    pub const fn new(interval: u64, burst: u32) -> Self {
        RateLimit {
            interval,
            burst,
            window_start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a message may be logged at `now` (in ticks). Counts the ones
    /// that may not.
    pub fn allow(&mut self, now: u64) -> bool {
        let fresh = match self.window_start {
            None => true,
            Some(s) => now.wrapping_sub(s) >= self.interval,
        };
        if fresh {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Messages refused since the last call (reset to 0).
    pub fn take_suppressed(&mut self) -> u64 {
        core::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_a_burst_per_interval_and_counts_the_rest() {
        let mut r = RateLimit::new(100, 3);
        let allowed = (0..1000).filter(|_| r.allow(5)).count();
        assert_eq!(allowed, 3, "a storm within one interval logs one burst");
        assert_eq!(r.take_suppressed(), 997);
        assert_eq!(r.take_suppressed(), 0);
        assert!(!r.allow(104), "the window runs from its first message");
        assert!(r.allow(105));
        assert!(r.allow(106));
        assert!(r.allow(150));
        assert!(!r.allow(151));
        assert_eq!(r.take_suppressed(), 2);
        let mut never = RateLimit::new(10, 0);
        assert!(!never.allow(0));
        assert_eq!(never.take_suppressed(), 1);
    }

    #[test]
    fn qemu_examples_from_hw_facts_4_11() {
        let r = FaultRecord::decode(0, 0x4000_5000, 0x80ff_ff05_0000_0008).unwrap();
        assert_eq!(r.source, Bdf::b(0, 1, 0));
        assert_eq!(r.addr, 0x4000_5000);
        assert!(r.write);
        assert_eq!(r.reason, FaultReason::WRITE_DENIED);
        assert_eq!(r.pasid, None, "PV is junk when PP = 0");
        assert_eq!(
            std::format!("{r}"),
            "DMAR fault: 00:01.0 write at 0x40005000, reason 0x5 (write to a page without write permission (or not present))"
        );
        let r = FaultRecord::decode(0, 0, 0x8000_0001_0000_0008).unwrap();
        assert_eq!(r.reason, FaultReason::ROOT_NOT_PRESENT);
        let r = FaultRecord::decode(0, 0, 0xc000_0002_0000_0008).unwrap();
        assert!(!r.write);
        assert_eq!(r.reason.describe(), "context entry not present");
        assert!(FaultRecord::decode(0, 0x1000, 0x0000_0005_0000_0008).is_none());
    }

    #[test]
    fn every_legacy_reason_has_words() {
        for code in 1..=0xe {
            assert_ne!(FaultReason(code).describe(), "unknown fault reason");
        }
        assert_eq!(FaultReason(0x40).describe(), "unknown fault reason");
    }

    #[test]
    fn interrupt_remapping_reasons_decode_to_words() {
        for code in 0x20..=0x27 {
            let r = FaultReason(code);
            assert!(r.is_interrupt_remapping());
            assert_ne!(r.describe(), "unknown fault reason", "{code:#x}");
        }
        assert!(!FaultReason::WRITE_DENIED.is_interrupt_remapping());
        assert_eq!(
            FaultReason::IR_SOURCE_ID.describe(),
            "interrupt from a requester the entry does not allow (source-id check)"
        );
        // Index 5 from 00:02.0, reason 0x26; FI carries the index in bits 63:48.
        let r = FaultRecord::decode(0, 5 << 48, 0x8000_0026_0000_0010).unwrap();
        assert_eq!(r.interrupt_index(), Some(5));
        assert_eq!(
            std::format!("{r}"),
            "IR fault: 00:02.0 interrupt index 5, reason 0x26 (interrupt from a requester the entry does not allow (source-id check))"
        );
        let r = FaultRecord::decode(0, 0, 0x8000_0025_0000_0010).unwrap();
        assert_eq!(
            r.reason.describe(),
            "compatibility-format interrupt blocked by remapping"
        );
    }
}
