//! VT-d remapping unit model (legacy mode), after QEMU 7.2's `intel_iommu.c` as
//! described in hw-facts §4 and the VT-d spec rev 4.x.
//!
//! The model keeps its own context cache and IOTLB, refreshed only by the proper
//! invalidations (or SRTP / TE toggles), so a missing invalidation shows up as a stale
//! translation, exactly as on QEMU (hw-facts 4.8).
//!
//! Interrupt remapping ([`VtdModel::msi_write`], also reached by a 4-byte
//! [`VtdModel::dma_write`] into 0xFEEx_xxxx) follows the spec rather than QEMU 7.2:
//! it caches IRTEs until an IEC invalidation, honours GCMD.CFI, and records IR
//! faults; QEMU does none of the three (hw-facts 4.5, 4.12).
//!
//! Laid out as the unit is: this file holds the state and the test hooks;
//! `regs` the register file and GCMD/GSTS handshakes, `inval` the
//! invalidation interfaces (register and queued), `dma` the requester-ID,
//! context and page walk of a device's DMA, `fault` fault recording,
//! `intremap` interrupt remapping.

mod dma;
mod fault;
mod intremap;
mod inval;
mod regs;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use hal::{PhysAddr, PhysMemory, RegisterAccess};

// Register offsets (spec §11.4); declared here independently of the driver crate.
const VER: usize = 0x00;
const CAP: usize = 0x08;
const ECAP: usize = 0x10;
const GCMD: usize = 0x18;
const GSTS: usize = 0x1c;
const RTADDR: usize = 0x20;
const CCMD: usize = 0x28;
const FSTS: usize = 0x34;
const FECTL: usize = 0x38;
const FEDATA: usize = 0x3c;
const FEADDR: usize = 0x40;
const FEUADDR: usize = 0x44;
const PMEN: usize = 0x64;
const IQH: usize = 0x80;
const IQT: usize = 0x88;
const IQA: usize = 0x90;
const ICS: usize = 0x9c;
const IECTL: usize = 0xa0;
const IEDATA: usize = 0xa4;
const IEADDR: usize = 0xa8;
const IEUADDR: usize = 0xac;
const IRTA: usize = 0xb8;

// GCMD / GSTS bits (§11.4.4-5).
const TE: u32 = 1 << 31;
const SRTP: u32 = 1 << 30;
const WBF: u32 = 1 << 27;
const QIE: u32 = 1 << 26;
const IRE: u32 = 1 << 25;
const SIRTP: u32 = 1 << 24;
const CFI: u32 = 1 << 23;
/// GSTS.IRES.
pub const GSTS_IRES: u32 = IRE;
/// GSTS.IRTPS.
pub const GSTS_IRTPS: u32 = SIRTP;
/// GSTS.CFIS.
pub const GSTS_CFIS: u32 = CFI;
/// GSTS.TES.
pub const GSTS_TES: u32 = TE;
/// GSTS.RTPS.
pub const GSTS_RTPS: u32 = SRTP;
/// GSTS.WBFS.
pub const GSTS_WBFS: u32 = WBF;
/// GSTS.QIES.
pub const GSTS_QIES: u32 = QIE;

// FSTS bits.
const PFO: u32 = 1 << 0;
const PPF: u32 = 1 << 1;
const IQE: u32 = 1 << 4;
const ICE: u32 = 1 << 5;
const ITE: u32 = 1 << 6;
const IM: u32 = 1 << 31;
const IP: u32 = 1 << 30;

const F: u64 = 1 << 63;

/// The interrupt address window (hw-facts 4.7): DMA writes here are MSIs.
const INTR_FIRST: u64 = 0xfee0_0000;
const INTR_END: u64 = 0xfef0_0000;
/// IR fault: reserved fields in the interrupt request.
const IR_REQ_RSVD: u8 = 0x20;
const T_READ: u64 = 1 << 62;

/// QEMU 7.2 defaults (hw-facts 4.4).
pub const QEMU_CAP: u64 = 0x00d2_008c_2226_0206;
/// QEMU 7.2 default ECAP under TCG.
pub const QEMU_ECAP: u64 = 0x0000_0000_00f0_0f4a;
/// CAP with `aw-bits=48` (3- and 4-level).
pub const QEMU_CAP_AW48: u64 = 0x00d2_008c_222f_0606;

// Real units, as Linux logs them ("DMAR: dmarN: reg_base_addr ... cap X ecap Y") in
// boot logs quoted in public issue threads (Skylake…Tiger Lake laptops, a Gemini Lake
// NAS, a Xeon server).

/// The non-graphics unit of client chips (Skylake…Alder Lake): ND=2 (256 domain ids),
/// SAGAW 4-level only with MGAW 39, 2M+1G pages, PSI with MAMV 18, FRO 0x400, one
/// fault record, RWBF=0, CM=0.
pub const CLIENT_CAP: u64 = 0x00d2_008c_4066_0462;
/// ECAP of that unit: C=0, QI, IR, EIM, PT, SC, IRO 0x500.
pub const CLIENT_ECAP: u64 = 0x0000_0000_00f0_50da;
/// The integrated-graphics unit (DRHD flags 0): as [`CLIENT_CAP`] but PSI=0, MAMV=0.
pub const GFX_CAP: u64 = 0x01c0_000c_4066_0462;
/// ECAP of the Skylake/Kaby Lake graphics unit: C=0, QI, DT, IR, EIM, PT, no SC, IRO 0x500.
pub const GFX_ECAP: u64 = 0x0000_007e_3ff0_505e;
/// ECAP of the Comet Lake / Coffee Lake graphics unit (adds PASID).
pub const GFX_ECAP_CML: u64 = 0x0000_019e_2ff0_505e;
/// A Xeon (Skylake-SP) unit: ND=6, SAGAW 4-level, MGAW 48, FRO 0x100 with eight fault
/// records, IRO 0x200.
pub const SERVER_CAP: u64 = 0x08d2_078c_106f_0466;
/// ECAP of that unit: page-walk coherent (C=1), QI, IR, EIM, PT, SC.
pub const SERVER_ECAP: u64 = 0x0000_0000_00f0_20df;

/// A DMA request that did not translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Source-id.
    pub sid: u16,
    /// Faulting address.
    pub addr: u64,
    /// Write (true) or read.
    pub write: bool,
    /// Fault reason code (hw-facts 4.11).
    pub reason: u8,
    /// Whether it went into a fault recording register (vs. suppressed/compressed/dropped).
    pub recorded: bool,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model DMA fault: sid {:#06x} {} {:#x} reason {:#x}",
            self.sid,
            if self.write { "write" } else { "read" },
            self.addr,
            self.reason
        )
    }
}

/// What kind of bus a bridge makes below it, as far as requester IDs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeKind {
    /// PCIe root or switch port: a PCI Express bus, requester IDs pass as they are.
    PciePort,
    /// PCIe-to-PCI/PCI-X bridge: a conventional bus whose requests the bridge
    /// re-issues as `(secondary bus, 00.0)` (PCIe-to-PCI bridge spec §2.3).
    PcieToPci,
    /// Conventional PCI-to-PCI bridge: a conventional bus whose requests carry
    /// the bridge's own ID upstream.
    Conventional,
}

/// A bridge of the PCI fabric in front of the model (see
/// [`VtdModel::add_bridge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bridge {
    /// Bus the bridge sits on.
    pub bus: u8,
    /// Its device/function.
    pub devfn: u8,
    /// Bus directly below it.
    pub secondary: u8,
    /// Its kind.
    pub kind: BridgeKind,
}

/// A register write, as logged by the model (for sequence assertions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegWrite {
    /// Offset.
    pub offset: usize,
    /// Value.
    pub value: u64,
    /// Width in bytes.
    pub width: u8,
}

/// An interrupt the model delivered to the CPUs (after remapping, or as a
/// compatibility-format MSI passed through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupt {
    /// Vector.
    pub vector: u8,
    /// Destination APIC ID (xAPIC: 8 bits, from IRTE bits 47:40 or address 19:12).
    pub dest: u32,
    /// Logical destination mode.
    pub logical: bool,
    /// Delivery mode code.
    pub delivery: u8,
    /// Level-triggered.
    pub level: bool,
    /// Redirection hint.
    pub redirection_hint: bool,
    /// The IRTE index that remapped it; `None` for a compatibility-format MSI.
    pub index: Option<u16>,
}

#[derive(Debug, Clone, Copy)]
struct IotlbEntry {
    did: u16,
    pa: u64,
    perm: u64,
}

struct State {
    cap: u64,
    ecap: u64,
    gsts: u32,
    rtaddr: u64,
    rta: u64,
    ccmd: u64,
    fsts: u32,
    fectl: u32,
    fedata: u32,
    feaddr: u32,
    iqt: u64,
    iqh: u64,
    iqa: u64,
    iq_base: u64,
    iq_size: u64,
    last_was_wait: bool,
    ics: u32,
    iectl: u32,
    iedata: u32,
    ieaddr: u32,
    irta: u64,
    ir_root: u64,
    ir_size: u32,
    ir_eime: bool,
    iec: BTreeMap<u16, [u64; 2]>,
    interrupts: Vec<Interrupt>,
    iec_invalidations: u32,
    iva: u64,
    iotlb_reg: u64,
    frcd: Vec<[u64; 2]>,
    next_frcd: usize,
    ctx_cache: BTreeMap<u16, (u64, u64)>,
    iotlb: BTreeMap<(u16, u8, u64), IotlbEntry>,
    stuck_status: u32,
    stuck_invalidation: bool,
    inject_queue_error: bool,
    /// The descriptor (queue index, lo, hi) the unit rejected: fetched again unchanged,
    /// it is rejected again (§6.5.2.10: software must fix it before clearing IQE).
    rejected: Option<(u64, u64, u64)>,
    ram: Option<(u64, u64)>,
    bridges: Vec<Bridge>,
    writes: Vec<RegWrite>,
    msis: Vec<(u32, u32)>,
    ctx_invalidations: u32,
    iotlb_invalidations: u32,
    /// Firmware's descriptors the unit is still working through at hand-off:
    /// each IQH read sees one more of them done (a queue that drains while
    /// software waits for it).
    busy_queue: u64,
}

/// The VT-d model: a register file plus a DMA engine over memory `M`.
pub struct VtdModel<M: PhysMemory> {
    mem: M,
    s: RefCell<State>,
}

impl<M: PhysMemory> VtdModel<M> {
    /// A unit with QEMU 7.2's default CAP/ECAP (3-level, QI, PT, ECAP.C = 0).
    pub fn qemu_default(mem: M) -> Self {
        Self::new(mem, QEMU_CAP, QEMU_ECAP)
    }

    /// A unit like QEMU with `aw-bits=48` (3- and 4-level tables).
    pub fn qemu_aw48(mem: M) -> Self {
        Self::new(mem, QEMU_CAP_AW48, QEMU_ECAP)
    }

    /// A unit with the given CAP/ECAP. The IOTLB registers are placed at ECAP.IRO and
    /// CAP.NFR + 1 fault recording registers at CAP.FRO, as the values say.
    pub fn new(mem: M, cap: u64, ecap: u64) -> Self {
        let nfr = ((cap >> 40) & 0xff) as usize + 1;
        VtdModel {
            mem,
            s: RefCell::new(State {
                cap,
                ecap,
                gsts: 0,
                rtaddr: 0,
                rta: 0,
                ccmd: 0,
                fsts: 0,
                fectl: IM,
                fedata: 0,
                feaddr: 0,
                iqt: 0,
                iqh: 0,
                iqa: 0,
                iq_base: 0,
                iq_size: 256,
                last_was_wait: true,
                ics: 0,
                iectl: IM,
                iedata: 0,
                ieaddr: 0,
                irta: 0,
                ir_root: 0,
                ir_size: 0,
                ir_eime: false,
                iec: BTreeMap::new(),
                interrupts: Vec::new(),
                iec_invalidations: 0,
                iva: 0,
                iotlb_reg: 0,
                frcd: alloc::vec![[0; 2]; nfr],
                next_frcd: 0,
                ctx_cache: BTreeMap::new(),
                iotlb: BTreeMap::new(),
                stuck_status: 0,
                stuck_invalidation: false,
                inject_queue_error: false,
                rejected: None,
                ram: None,
                bridges: Vec::new(),
                writes: Vec::new(),
                msis: Vec::new(),
                ctx_invalidations: 0,
                iotlb_invalidations: 0,
                busy_queue: 0,
            }),
        }
    }

    /// The memory the model's DMA reaches.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Status bits the model will never change (a broken unit): GCMD commands for them
    /// are ignored, so the driver's poll must time out. For GSTS.WBFS the flush starts
    /// (WBFS set) and never completes.
    pub fn set_stuck_status(&self, bits: u32) {
        self.s.borrow_mut().stuck_status = bits;
    }

    /// Invalidations never complete: register requests keep ICC/IVT set, and the
    /// invalidation queue is not processed (IQH stays, no status write).
    pub fn set_stuck_invalidation(&self, stuck: bool) {
        self.s.borrow_mut().stuck_invalidation = stuck;
    }

    /// The state firmware (pre-boot DMA protection, or a kernel before kexec) hands
    /// over: translation on through a root table at `root` (its contents are whatever
    /// memory holds), queued invalidation on with an idle queue at `queue` whose last
    /// descriptor was a wait (head = tail = index 4), and/or interrupt remapping on
    /// with a table at `irt`. Only the states the unit supports are set.
    pub fn firmware_handoff(&self, root: Option<u64>, queue: Option<u64>, irt: Option<u64>) {
        let mut s = self.s.borrow_mut();
        if let Some(r) = root {
            s.rtaddr = r;
            s.rta = r;
            s.gsts |= SRTP;
            if (s.cap >> 8) & 0x1f != 0 {
                s.gsts |= TE;
            }
        }
        if let Some(q) = queue.filter(|_| s.ecap & (1 << 1) != 0) {
            s.iqa = q;
            s.iq_base = q & !0xfff;
            s.iq_size = 256;
            s.iqh = 4 << 4;
            s.iqt = 4 << 4;
            s.last_was_wait = true;
            s.gsts |= QIE;
        }
        if let Some(t) = irt.filter(|_| s.ecap & (1 << 3) != 0) {
            s.irta = t;
            s.gsts |= SIRTP | IRE;
        }
    }

    /// As [`VtdModel::firmware_handoff`] with a queue, but firmware's last
    /// `pending` descriptors are still being processed (head `pending` entries
    /// behind tail, the last one not yet a completed wait): the unit finishes
    /// one each time IQH is read. Until the queue is idle a QIE disable is
    /// ignored, as QEMU ignores it (hw-facts 4.5: "improper state when disable
    /// QI"), so software must drain the queue first.
    pub fn firmware_handoff_busy_queue(&self, queue: u64, pending: u64) {
        self.firmware_handoff(None, Some(queue), None);
        let mut s = self.s.borrow_mut();
        if s.gsts & QIE != 0 && pending > 0 {
            s.iqh = (4u64.saturating_sub(pending) % s.iq_size) << 4;
            s.busy_queue = pending;
            s.last_was_wait = false;
        }
    }

    /// The next queued descriptor is treated as invalid (FSTS.IQE, IQH stays on it). As
    /// for a descriptor the unit finds malformed, it stays invalid while its memory is
    /// unchanged: clearing IQE resumes fetching at IQH, and the same descriptor there
    /// raises IQE again.
    pub fn inject_queue_error(&self) {
        self.s.borrow_mut().inject_queue_error = true;
    }

    /// Physical range `[start, end)` that table reads may hit; reads outside give the
    /// "unreadable" fault reasons. Default: all of the memory.
    pub fn set_ram(&self, start: u64, end: u64) {
        self.s.borrow_mut().ram = Some((start, end));
    }

    /// Puts a bridge between the devices and the unit: DMA from a device on a
    /// bus below it then reaches the unit with the requester ID the hardware
    /// gives it. Walking up from the device's bus, every conventional bus
    /// replaces the ID: below a PCIe-to-PCI bridge with `(that bus, 00.0)`,
    /// below a conventional bridge with the bridge's own ID; the ID given
    /// nearest the root is the one that arrives (QEMU 7.2's
    /// `pci_device_iommu_address_space`, real bridges alike).
    pub fn add_bridge(&self, b: Bridge) {
        self.s.borrow_mut().bridges.push(b);
    }

    /// The source-id a DMA from the device at `bus:devfn` arrives with.
    pub fn requester_id(&self, bus: u8, devfn: u8) -> u16 {
        let s = self.s.borrow();
        let mut rid = (bus, devfn);
        let mut at = bus;
        // At most one step per bus: a bridge loop in a test's fabric cannot hang.
        for _ in 0..256 {
            let Some(b) = s.bridges.iter().find(|b| b.secondary == at && b.bus != at) else {
                break;
            };
            match b.kind {
                BridgeKind::PciePort => {}
                BridgeKind::PcieToPci => rid = (at, 0),
                BridgeKind::Conventional => rid = (b.bus, b.devfn),
            }
            at = b.bus;
        }
        (rid.0 as u16) << 8 | rid.1 as u16
    }

    /// Current GSTS.
    pub fn gsts(&self) -> u32 {
        self.s.borrow().gsts
    }

    /// Every register write so far.
    pub fn writes(&self) -> Vec<RegWrite> {
        self.s.borrow().writes.clone()
    }

    /// Fault-event MSIs sent (address, data).
    pub fn msis(&self) -> Vec<(u32, u32)> {
        self.s.borrow().msis.clone()
    }

    /// Number of cached IOTLB entries.
    pub fn iotlb_len(&self) -> usize {
        self.s.borrow().iotlb.len()
    }

    /// Number of cached context entries.
    pub fn context_cache_len(&self) -> usize {
        self.s.borrow().ctx_cache.len()
    }

    /// (context-cache, IOTLB) invalidations performed, by either interface.
    pub fn invalidation_counts(&self) -> (u32, u32) {
        let s = self.s.borrow();
        (s.ctx_invalidations, s.iotlb_invalidations)
    }

    /// Raw fault recording register `i` (lo, hi).
    pub fn frcd(&self, i: usize) -> [u64; 2] {
        self.s.borrow().frcd.get(i).copied().unwrap_or([0; 2])
    }

    /// Interrupts delivered so far (by [`VtdModel::msi_write`]).
    pub fn interrupts(&self) -> Vec<Interrupt> {
        self.s.borrow().interrupts.clone()
    }

    /// Number of cached IRTEs.
    pub fn iec_len(&self) -> usize {
        self.s.borrow().iec.len()
    }

    /// Interrupt-entry-cache invalidation descriptors processed.
    pub fn iec_invalidations(&self) -> u32 {
        self.s.borrow().iec_invalidations
    }
}

/// Faults suppressed by FPD = 1 (hw-facts 4.11 "qualified").
fn qualified(reason: u8) -> bool {
    !matches!(reason, 0x1 | 0x8 | 0x9 | 0xa | 0xb)
}

#[cfg(test)]
mod tests;
