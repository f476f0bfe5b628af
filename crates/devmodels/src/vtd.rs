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

    /// An MSI: a 4-byte write of `data` to `addr` (0xFEEx_xxxx) from the device at
    /// `bus:devfn`. With GSTS.IRES clear it is delivered as a compatibility-format
    /// message. With remapping on: a compatibility-format message passes only if
    /// GSTS.CFIS is set (else fault 0x25); a remappable one is looked up in the
    /// IRTE cache, or read from the table and cached (§5.1.4: faults are not
    /// cached), checked for present (0x22), reserved fields (0x24) and source-id
    /// (0x26), and delivered as the IRTE says. Faults are recorded with the
    /// interrupt index in FI bits 63:48 (§11.4.14) unless the IRTE's FPD
    /// suppresses a qualified one. QEMU 7.2 differs: it drops the MSI without a
    /// record, keeps no IRTE cache, and ignores CFI (hw-facts 4.11, 4.12).
    pub fn msi_write(&self, bus: u8, devfn: u8, addr: u64, data: u32) -> Result<Interrupt, Fault> {
        let sid = self.requester_id(bus, devfn);
        let fault = |reason: u8, index: u16, fpd: bool| {
            let qualified = matches!(reason, 0x22 | 0x24 | 0x26 | 0x27);
            let recorded = !(qualified && fpd)
                && self.record_fault_lo(sid, (index as u64) << 48, true, reason);
            Err(Fault {
                sid,
                addr,
                write: true,
                reason,
                recorded,
            })
        };
        let compat = Interrupt {
            vector: data as u8,
            dest: ((addr >> 12) & 0xff) as u32,
            logical: addr & (1 << 2) != 0,
            delivery: ((data >> 8) & 7) as u8,
            level: data & (1 << 15) != 0,
            redirection_hint: addr & (1 << 3) != 0,
            index: None,
        };
        let (gsts, size, root, eime) = {
            let s = self.s.borrow();
            (s.gsts, s.ir_size, s.ir_root, s.ir_eime)
        };
        if gsts & IRE == 0 {
            self.s.borrow_mut().interrupts.push(compat);
            return Ok(compat);
        }
        if addr >> 32 != 0 || addr & 0xfff0_0000 != INTR_FIRST {
            return fault(IR_REQ_RSVD, 0, false);
        }
        if addr & (1 << 4) == 0 {
            if gsts & CFI != 0 {
                self.s.borrow_mut().interrupts.push(compat);
                return Ok(compat);
            }
            return fault(0x25, 0, false);
        }
        let a = addr as u32;
        let shv = a & (1 << 3) != 0;
        let mut index = ((a >> 5) & 0x7fff) | ((a >> 2) & 1) << 15;
        if shv {
            if data & 0xffff_0000 != 0 {
                return fault(IR_REQ_RSVD, index as u16, false);
            }
            index += data & 0xffff;
        }
        if index >= size || index > 0xffff {
            return fault(0x21, index as u16, false);
        }
        let index = index as u16;
        let cached = self.s.borrow().iec.get(&index).copied();
        let [lo, hi] = match cached {
            Some(e) => e,
            None => {
                let pa = root + index as u64 * 16;
                if !self.readable(pa, 16) {
                    return fault(0x23, index, false);
                }
                [
                    self.mem.read_u64(PhysAddr::new(pa)),
                    self.mem.read_u64(PhysAddr::new(pa + 8)),
                ]
            }
        };
        let fpd = lo & 2 != 0;
        if lo & 1 == 0 {
            return fault(0x22, index, fpd);
        }
        // §9.10 reserved: 14:12, IM (15; no posted interrupts), 31:24, the xAPIC
        // destination bits outside 47:40, 127:84, SVT = 11 and reserved delivery modes.
        let dlm = (lo >> 5) & 7;
        if lo & 0xff00_f000 != 0
            || (!eime && lo & 0xffff_00ff_0000_0000 != 0)
            || hi >> 20 != 0
            || (hi >> 18) & 3 == 3
            || dlm == 3
            || dlm == 6
        {
            return fault(0x24, index, fpd);
        }
        let irte_sid = hi as u16;
        let ok = match (hi >> 18) & 3 {
            0 => true,
            1 => {
                let mask: u16 = [0xffff, 0xfffb, 0xfff9, 0xfff8][((hi >> 16) & 3) as usize];
                irte_sid & mask == sid & mask
            }
            _ => {
                let bus = (sid >> 8) as u8;
                ((irte_sid >> 8) as u8..=irte_sid as u8).contains(&bus)
            }
        };
        if !ok {
            return fault(0x26, index, fpd);
        }
        let dest = (lo >> 32) as u32;
        let irq = Interrupt {
            vector: (lo >> 16) as u8,
            dest: if eime { dest } else { (dest >> 8) & 0xff },
            logical: lo & 4 != 0,
            delivery: dlm as u8,
            level: lo & 16 != 0,
            redirection_hint: lo & 8 != 0,
            index: Some(index),
        };
        let mut s = self.s.borrow_mut();
        s.iec.insert(index, [lo, hi]);
        s.interrupts.push(irq);
        Ok(irq)
    }

    fn readable(&self, pa: u64, len: u64) -> bool {
        match self.s.borrow().ram {
            Some((a, b)) => pa >= a && pa + len <= b,
            None => true,
        }
    }

    // ----- DMA engine -----

    /// A device access of `len` bytes at `iova` from the device at `bus:devfn`
    /// (through the bridges added with [`VtdModel::add_bridge`]): translates every
    /// page touched and returns the physical address of the first byte. Faults are
    /// recorded like the hardware does.
    pub fn dma(
        &self,
        bus: u8,
        devfn: u8,
        iova: u64,
        len: usize,
        write: bool,
    ) -> Result<PhysAddr, Fault> {
        let sid = self.requester_id(bus, devfn);
        let first = self.access(sid, iova, write)?;
        let mut page = (iova & !0xfff) + 0x1000;
        while page < iova + len as u64 {
            self.access(sid, page, write)?;
            page += 0x1000;
        }
        Ok(PhysAddr::new(first))
    }

    /// Device write of `data` at `iova`, page by page.
    /// A 4-byte write into the interrupt window 0xFEEx_xxxx is an MSI and goes to
    /// [`VtdModel::msi_write`] instead of translation, as in QEMU.
    pub fn dma_write(&self, bus: u8, devfn: u8, iova: u64, data: &[u8]) -> Result<(), Fault> {
        if (INTR_FIRST..INTR_END).contains(&iova) {
            let Ok(bytes) = <[u8; 4]>::try_from(data) else {
                // QEMU's interrupt window takes 4-byte writes only.
                return Err(Fault {
                    sid: self.requester_id(bus, devfn),
                    addr: iova,
                    write: true,
                    reason: IR_REQ_RSVD,
                    recorded: false,
                });
            };
            return self
                .msi_write(bus, devfn, iova, u32::from_le_bytes(bytes))
                .map(|_| ());
        }
        let sid = self.requester_id(bus, devfn);
        let mut off = 0usize;
        while off < data.len() {
            let a = iova + off as u64;
            let n = core::cmp::min(data.len() - off, (0x1000 - (a & 0xfff)) as usize);
            let pa = self.access(sid, a, true)?;
            self.mem.write(PhysAddr::new(pa), &data[off..off + n]);
            off += n;
        }
        Ok(())
    }

    /// Device read into `buf` from `iova`, page by page.
    pub fn dma_read(&self, bus: u8, devfn: u8, iova: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let sid = self.requester_id(bus, devfn);
        let mut off = 0usize;
        while off < buf.len() {
            let a = iova + off as u64;
            let n = core::cmp::min(buf.len() - off, (0x1000 - (a & 0xfff)) as usize);
            let pa = self.access(sid, a, false)?;
            self.mem.read(PhysAddr::new(pa), &mut buf[off..off + n]);
            off += n;
        }
        Ok(())
    }

    fn access(&self, sid: u16, iova: u64, write: bool) -> Result<u64, Fault> {
        match self.translate(sid, iova, write) {
            Ok(pa) => Ok(pa),
            Err((reason, qualified_suppressed)) => {
                let recorded = !qualified_suppressed && self.record_fault(sid, iova, write, reason);
                Err(Fault {
                    sid,
                    addr: iova,
                    write,
                    reason,
                    recorded,
                })
            }
        }
    }

    /// Context entry for `sid`: from the cache, or fetched and cached on success.
    /// Errors carry (reason, fpd).
    fn context(&self, sid: u16) -> Result<(u64, u64), (u8, bool)> {
        if let Some(&c) = self.s.borrow().ctx_cache.get(&sid) {
            return Ok(c);
        }
        let (rta, cap, ecap) = {
            let s = self.s.borrow();
            (s.rta, s.cap, s.ecap)
        };
        let haw = ((cap >> 16) & 0x3f) + 1;
        let bus = (sid >> 8) as u64;
        let devfn = (sid & 0xff) as u64;
        let re_pa = (rta & !0xfff) + bus * 16;
        if !self.readable(re_pa, 16) {
            return Err((0x8, false));
        }
        let re_lo = self.mem.read_u64(PhysAddr::new(re_pa));
        let re_hi = self.mem.read_u64(PhysAddr::new(re_pa + 8));
        if re_lo & 1 == 0 {
            return Err((0x1, false));
        }
        // §9.1: lo bits 11:1 and bits >= HAW reserved; hi reserved in legacy mode.
        if re_lo & 0xffe != 0 || (re_lo >> haw) != 0 || re_hi != 0 {
            return Err((0xa, false));
        }
        let ce_pa = (re_lo & !0xfff) + devfn * 16;
        if !self.readable(ce_pa, 16) {
            return Err((0x9, false));
        }
        let lo = self.mem.read_u64(PhysAddr::new(ce_pa));
        let hi = self.mem.read_u64(PhysAddr::new(ce_pa + 8));
        let fpd = lo & 2 != 0;
        if lo & 1 == 0 {
            return Err((0x2, fpd));
        }
        if lo & 0xff0 != 0 || hi >> 24 != 0 || hi & 0x80 != 0 || (lo >> haw) != 0 {
            return Err((0xb, fpd));
        }
        let tt = (lo >> 2) & 3;
        let pt_ok = ecap & (1 << 6) != 0;
        let dt_ok = ecap & (1 << 2) != 0;
        match tt {
            0 => {}
            1 if dt_ok => {}
            2 if pt_ok => {}
            _ => return Err((0x3, fpd)),
        }
        // AW must be a SAGAW level, even for pass-through (hw-facts 4.6).
        let aw = hi & 7;
        let sagaw = (cap >> 8) & 0x1f;
        if aw > 3 || sagaw & (1 << aw) == 0 {
            return Err((0x3, fpd));
        }
        self.s.borrow_mut().ctx_cache.insert(sid, (lo, hi));
        Ok((lo, hi))
    }

    /// Translates one access. Err((reason, suppressed)).
    fn translate(&self, sid: u16, iova: u64, write: bool) -> Result<u64, (u8, bool)> {
        if self.s.borrow().gsts & TE == 0 {
            return Ok(iova);
        }
        let (lo, hi) = match self.context(sid) {
            Ok(c) => c,
            Err((r, fpd)) => return Err((r, fpd && qualified(r))),
        };
        let fpd = lo & 2 != 0;
        let fail = |r: u8| Err((r, fpd && qualified(r)));
        if (lo >> 2) & 3 == 2 {
            return Ok(iova);
        }
        let (cap, ecap) = {
            let s = self.s.borrow();
            (s.cap, s.ecap)
        };
        let haw = ((cap >> 16) & 0x3f) as u32 + 1;
        let did = (hi >> 8) as u16;
        let levels = (hi & 7) as u32 + 2;
        let agaw = 12 + 9 * levels;
        if iova >> agaw.min(haw) != 0 {
            return fail(0x4);
        }
        let need = if write { 2u64 } else { 1u64 };
        let deny = if write { 0x5 } else { 0x6 };
        // IOTLB lookup (4 KiB, 2 MiB, 1 GiB).
        for lvl in 1..=3u32 {
            let shift = 12 + 9 * (lvl - 1);
            let key = (sid, lvl as u8, iova >> shift);
            let hit = self.s.borrow().iotlb.get(&key).copied();
            if let Some(e) = hit {
                if e.perm & need == 0 {
                    return fail(deny);
                }
                return Ok(e.pa | (iova & ((1u64 << shift) - 1)));
            }
        }
        let sc = ecap & (1 << 7) != 0;
        let mut table = lo & 0x000f_ffff_ffff_f000;
        let mut perm = 3u64;
        let mut level = levels;
        loop {
            let idx = (iova >> (12 + 9 * (level - 1))) & 0x1ff;
            let pa = table + idx * 8;
            if !self.readable(pa, 8) {
                return fail(if level == levels { 0x3 } else { 0x7 });
            }
            let e = self.mem.read_u64(PhysAddr::new(pa));
            perm &= e & 3;
            if perm & need == 0 {
                return fail(deny);
            }
            let ps = e & (1 << 7) != 0;
            // §9.8 reserved bits: address bits >= HAW, SNP without snoop control,
            // PS at level 4 and above.
            let addr_bits = e & 0x000f_ffff_ffff_f000;
            if (addr_bits >> haw) != 0 || (!sc && e & (1 << 11) != 0) || (ps && level >= 4) {
                return fail(0xc);
            }
            if level == 1 || ps {
                let shift = 12 + 9 * (level - 1);
                let size = 1u64 << shift;
                if ps && addr_bits & (size - 1) != 0 {
                    return fail(0xc);
                }
                let base = addr_bits & !(size - 1);
                if base < 0xfef0_0000 && base + size > 0xfee0_0000 {
                    return fail(0xe);
                }
                let mut s = self.s.borrow_mut();
                if s.iotlb.len() >= 1024 {
                    s.iotlb.clear();
                }
                s.iotlb.insert(
                    (sid, level as u8, iova >> shift),
                    IotlbEntry {
                        did,
                        pa: base,
                        perm,
                    },
                );
                return Ok(base | (iova & (size - 1)));
            }
            table = addr_bits;
            level -= 1;
        }
    }

    /// Fault recording rules of hw-facts 4.11. Returns whether it was recorded.
    fn record_fault(&self, sid: u16, iova: u64, write: bool, reason: u8) -> bool {
        self.record_fault_lo(sid, iova & !0xfff, write, reason)
    }

    /// Records a fault whose low qword (FI) is `lo`.
    fn record_fault_lo(&self, sid: u16, lo: u64, write: bool, reason: u8) -> bool {
        let mut s = self.s.borrow_mut();
        if s.fsts & PFO != 0 {
            return false;
        }
        if s.frcd.iter().any(|r| r[1] & F != 0 && r[1] as u16 == sid) {
            return false;
        }
        let i = s.next_frcd;
        if s.frcd[i][1] & F != 0 {
            s.fsts |= PFO;
            Self::raise_fault_event(&mut s, true);
            return false;
        }
        let pv_junk = if matches!(reason, 5 | 6) {
            0xffffu64 << 40
        } else {
            0
        };
        s.frcd[i] = [
            lo,
            F | if write { 0 } else { T_READ } | pv_junk | (reason as u64) << 32 | sid as u64,
        ];
        let n = s.frcd.len();
        s.next_frcd = (i + 1) % n;
        let was_pending = s.fsts & (PPF | PFO | IQE) != 0;
        s.fsts = (s.fsts & !0xff00) | (i as u32) << 8 | PPF;
        if !was_pending {
            Self::raise_fault_event(&mut s, false);
        }
        true
    }

    fn raise_fault_event(s: &mut State, _overflow: bool) {
        if s.fectl & IP != 0 {
            return;
        }
        if s.fectl & IM != 0 {
            s.fectl |= IP;
        } else {
            let m = (s.feaddr, s.fedata);
            s.msis.push(m);
        }
    }

    fn update_ppf(s: &mut State) {
        if s.frcd.iter().any(|r| r[1] & F != 0) {
            s.fsts |= PPF;
        } else {
            s.fsts &= !PPF;
        }
        if s.fsts & (PPF | PFO | IQE) == 0 {
            s.fectl &= !IP;
        }
    }

    // ----- invalidation -----

    fn inval_context(s: &mut State, g: u64, sid: u16, fm: u8) -> u64 {
        s.ctx_invalidations += 1;
        match g {
            // Domain-selective is treated as global (hw-facts 4.8).
            1 | 2 => {
                s.ctx_cache.clear();
                1
            }
            3 => {
                let mask: u16 = match fm & 3 {
                    0 => 0xffff,
                    1 => 0xfffb,
                    2 => 0xfff9,
                    _ => 0xfff8,
                };
                s.ctx_cache.retain(|&k, _| k & mask != sid & mask);
                // IOTLB entries of that device keep their did; QEMU also drops them
                // from the device's address space, but the spec asks software for an
                // IOTLB invalidation too, which tests check separately.
                3
            }
            _ => 0,
        }
    }

    fn inval_iotlb(s: &mut State, g: u64, did: u16, addr: u64, am: u8) -> u64 {
        s.iotlb_invalidations += 1;
        let mamv = ((s.cap >> 48) & 0x3f) as u8;
        match g {
            1 => {
                s.iotlb.clear();
                1
            }
            2 => {
                s.iotlb.retain(|_, e| e.did != did);
                2
            }
            3 if am <= mamv => {
                let first = (addr >> 12) & !((1u64 << am) - 1);
                let last = first + (1u64 << am) - 1;
                s.iotlb.retain(|&(_, lvl, gfn), e| {
                    let shift = 9 * (lvl as u32 - 1);
                    let p0 = gfn << shift;
                    let p1 = p0 + (1u64 << shift) - 1;
                    e.did != did || p1 < first || p0 > last
                });
                3
            }
            _ => 0,
        }
    }

    fn process_queue(&self) {
        loop {
            let (head, tail, base, size) = {
                let s = self.s.borrow();
                if s.gsts & QIE == 0 || s.fsts & IQE != 0 || s.stuck_invalidation {
                    return;
                }
                (s.iqh >> 4, s.iqt >> 4, s.iq_base, s.iq_size)
            };
            if tail >= size {
                let mut s = self.s.borrow_mut();
                s.fsts |= IQE;
                Self::raise_fault_event(&mut s, false);
                return;
            }
            if head == tail {
                return;
            }
            let pa = base + head * 16;
            let lo = self.mem.read_u64(PhysAddr::new(pa));
            let hi = self.mem.read_u64(PhysAddr::new(pa + 8));
            let injected = core::mem::take(&mut self.s.borrow_mut().inject_queue_error);
            let again = self.s.borrow().rejected == Some((head, lo, hi));
            let ok = !injected && !again && self.run_descriptor(lo, hi);
            let mut s = self.s.borrow_mut();
            if !ok {
                s.rejected = Some((head, lo, hi));
                s.fsts |= IQE;
                Self::raise_fault_event(&mut s, false);
                return;
            }
            s.rejected = None;
            s.last_was_wait = lo & 0xf == 5;
            s.iqh = ((head + 1) % size) << 4;
        }
    }

    fn run_descriptor(&self, lo: u64, hi: u64) -> bool {
        match lo & 0xf {
            1 => {
                if lo & 0xfffc_0000_0000_ffc0 != 0 || hi != 0 {
                    return false;
                }
                let mut s = self.s.borrow_mut();
                Self::inval_context(
                    &mut s,
                    (lo >> 4) & 3,
                    (lo >> 32) as u16,
                    ((lo >> 48) & 3) as u8,
                ) != 0
            }
            2 => {
                if lo & 0xffff_ffff_0000_ff00 != 0 || hi & 0xf80 != 0 {
                    return false;
                }
                let mut s = self.s.borrow_mut();
                Self::inval_iotlb(
                    &mut s,
                    (lo >> 4) & 3,
                    (lo >> 16) as u16,
                    hi & !0xfff,
                    (hi & 0x3f) as u8,
                ) != 0
            }
            3 => lo & 0xffff_0000_ffe0_fff8 == 0 && hi & 0xffe == 0,
            4 => {
                // §6.5.2.7: G (bit 4) 0 = global, 1 = index-selective over
                // IIDX (47:32) aligned down to 2^IM (31:27) entries.
                let mut s = self.s.borrow_mut();
                s.iec_invalidations += 1;
                if lo & (1 << 4) == 0 {
                    s.iec.clear();
                } else {
                    let im = ((lo >> 27) & 0x1f) as u32;
                    let first = ((lo >> 32) as u16 as u32) & !((1u32 << im) - 1);
                    let last = first + (1u32 << im) - 1;
                    s.iec
                        .retain(|&i, _| (i as u32) < first || (i as u32) > last);
                }
                true
            }
            6 | 7 => true,
            5 => {
                if lo & 0xffff_ff80 != 0 || hi & 3 != 0 {
                    return false;
                }
                let sw = lo & (1 << 5) != 0;
                let iflag = lo & (1 << 4) != 0;
                assert!(
                    !(sw && iflag),
                    "model: wait descriptor with SW and IF both set aborts QEMU (hw-facts 4.10)"
                );
                if sw {
                    self.mem.write_u32(PhysAddr::new(hi), (lo >> 32) as u32);
                    true
                } else if iflag {
                    let mut s = self.s.borrow_mut();
                    s.ics |= 1;
                    s.iectl |= IP;
                    if s.iectl & IM == 0 {
                        let m = (s.ieaddr, s.iedata);
                        s.msis.push(m);
                        s.iectl &= !IP;
                    }
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    // ----- registers -----

    fn iro(&self) -> usize {
        (((self.s.borrow().ecap >> 8) & 0x3ff) * 16) as usize
    }

    fn fro(&self) -> (usize, usize) {
        let s = self.s.borrow();
        ((((s.cap >> 24) & 0x3ff) * 16) as usize, s.frcd.len())
    }

    /// Value of a 64-bit register, or None if `off` is not one.
    fn reg64(&self, off: usize) -> Option<u64> {
        let iro = self.iro();
        let (fro, nfr) = self.fro();
        let s = self.s.borrow();
        Some(match off {
            CAP => s.cap,
            ECAP => s.ecap,
            RTADDR => s.rtaddr,
            CCMD => s.ccmd,
            IQH => s.iqh,
            IQT => s.iqt,
            // Reads return the base latched at the last QIE enable, plus QS.
            IQA => s.iq_base | (s.iqa & 0x807),
            IRTA => s.irta,
            o if o == iro => 0, // IVA is write-only
            o if o == iro + 8 => s.iotlb_reg,
            o if o >= fro && o < fro + nfr * 16 => {
                let i = (o - fro) / 16;
                s.frcd[i][(o - fro) % 16 / 8]
            }
            _ => return None,
        })
    }

    fn reg32(&self, off: usize) -> Option<u32> {
        let s = self.s.borrow();
        Some(match off {
            VER => 0x10,
            GCMD => 0,
            GSTS => s.gsts,
            FSTS => s.fsts,
            FECTL => s.fectl,
            FEDATA => s.fedata,
            FEADDR => s.feaddr,
            FEUADDR | PMEN | IEUADDR => 0,
            ICS => s.ics,
            IECTL => s.iectl,
            IEDATA => s.iedata,
            IEADDR => s.ieaddr,
            _ => return None,
        })
    }

    fn write_reg64(&self, off: usize, v: u64, acts: bool) {
        let iro = self.iro();
        let (fro, nfr) = self.fro();
        match off {
            RTADDR => self.s.borrow_mut().rtaddr = v & !0x3ff,
            CCMD => {
                let mut s = self.s.borrow_mut();
                s.ccmd = v & 0xe000_0003_ffff_ffff;
                if acts && v >> 63 != 0 && s.gsts & QIE != 0 {
                    // With QI on, register requests are ignored and ICC stays set;
                    // QEMU still reports the granularity (reads 0xA800.. for a global
                    // request, hw-facts 4.9).
                    let caig = if (v >> 61) & 3 == 3 { 3 } else { 1 };
                    s.ccmd |= caig << 59;
                } else if acts && v >> 63 != 0 && !s.stuck_invalidation {
                    let caig = Self::inval_context(
                        &mut s,
                        (v >> 61) & 3,
                        (v >> 16) as u16,
                        ((v >> 32) & 3) as u8,
                    );
                    s.ccmd = (s.ccmd & !(1 << 63) & !(3 << 59)) | caig << 59;
                }
            }
            IQT => {
                self.s.borrow_mut().iqt = v & 0x7fff0;
                if acts {
                    self.process_queue();
                }
            }
            IQA => self.s.borrow_mut().iqa = v & !0x7f8,
            IRTA => self.s.borrow_mut().irta = v & !0x7f0,
            o if o == iro => self.s.borrow_mut().iva = v,
            o if o == iro + 8 => {
                let mut s = self.s.borrow_mut();
                s.iotlb_reg = v & 0xb003_ffff_0000_0000;
                if acts && v >> 63 != 0 && s.gsts & QIE == 0 && !s.stuck_invalidation {
                    let iva = s.iva;
                    let iaig = Self::inval_iotlb(
                        &mut s,
                        (v >> 60) & 3,
                        (v >> 32) as u16,
                        iva & !0xfff,
                        (iva & 0x3f) as u8,
                    );
                    s.iotlb_reg = (s.iotlb_reg & !(1 << 63) & !(3 << 57)) | iaig << 57;
                }
            }
            o if o >= fro && o < fro + nfr * 16 && (o - fro) % 16 == 8 => {
                let i = (o - fro) / 16;
                let mut s = self.s.borrow_mut();
                if v & F != 0 {
                    s.frcd[i][1] &= !F;
                    Self::update_ppf(&mut s);
                }
            }
            _ => {}
        }
    }

    fn write_reg32(&self, off: usize, v: u32) {
        match off {
            GCMD => self.gcmd(v),
            FSTS => {
                let resume = {
                    let mut s = self.s.borrow_mut();
                    let was_iqe = s.fsts & IQE != 0;
                    s.fsts &= !(v & (PFO | IQE | ICE | ITE));
                    Self::update_ppf(&mut s);
                    was_iqe && s.fsts & IQE == 0
                };
                // Clearing IQE lets the unit fetch again from IQH (the descriptor that
                // failed, unless software fixed it).
                if resume {
                    self.process_queue();
                }
            }
            FECTL => {
                let mut s = self.s.borrow_mut();
                s.fectl = (s.fectl & IP) | (v & IM);
                if s.fectl & IM == 0 && s.fectl & IP != 0 {
                    let m = (s.feaddr, s.fedata);
                    s.msis.push(m);
                    s.fectl &= !IP;
                }
            }
            FEDATA => self.s.borrow_mut().fedata = v & 0xffff,
            FEADDR => self.s.borrow_mut().feaddr = v & !3,
            ICS => {
                let mut s = self.s.borrow_mut();
                if v & 1 != 0 {
                    s.ics &= !1;
                    s.iectl &= !IP;
                }
            }
            IECTL => {
                let mut s = self.s.borrow_mut();
                s.iectl = (s.iectl & IP) | (v & IM);
            }
            IEDATA => self.s.borrow_mut().iedata = v,
            IEADDR => self.s.borrow_mut().ieaddr = v & !3,
            _ => {}
        }
    }

    /// GCMD: compare the written value with GSTS (hw-facts 4.5).
    fn gcmd(&self, v: u32) {
        let mut s = self.s.borrow_mut();
        let st = s.gsts;
        let stuck = s.stuck_status;
        let dma_translation = (s.cap >> 8) & 0x1f != 0;
        if (st & TE) != (v & TE) && stuck & TE == 0 && dma_translation {
            s.gsts ^= TE;
            s.ctx_cache.clear();
            s.iotlb.clear();
            if v & TE == 0 {
                s.next_frcd = 0;
            }
        }
        if v & SRTP != 0 && stuck & SRTP == 0 {
            s.rta = s.rtaddr;
            s.gsts |= SRTP;
            s.ctx_cache.clear();
            s.iotlb.clear();
        }
        if v & WBF != 0 && stuck & WBF != 0 {
            // A flush that never completes.
            s.gsts |= WBF;
        }
        let mut run_queue = false;
        if (st & QIE) != (v & QIE) && stuck & QIE == 0 {
            if v & QIE != 0 {
                s.iq_base = s.iqa & !0xfff;
                s.iq_size = 1 << ((s.iqa & 7) + 8);
                s.gsts |= QIE;
                run_queue = s.iqt != 0;
            } else if s.iqh == s.iqt && s.last_was_wait {
                s.gsts &= !QIE;
                s.iqh = 0;
            }
        }
        if (st & IRE) != (v & IRE) && s.ecap & (1 << 3) != 0 && stuck & IRE == 0 {
            s.gsts ^= IRE;
        }
        if v & SIRTP != 0 && stuck & SIRTP == 0 {
            // Latch IRTA (table address, 2^(S+1) entries, EIME) and flush the
            // interrupt entry cache (hw-facts 4.5).
            let haw = ((s.cap >> 16) & 0x3f) + 1;
            s.ir_root = s.irta & ((1u64 << haw) - 1) & !0xfff;
            s.ir_size = 1 << ((s.irta & 0xf) + 1);
            s.ir_eime = s.irta & (1 << 11) != 0 && s.ecap & (1 << 4) != 0;
            s.iec.clear();
            s.gsts |= SIRTP;
        }
        // CFI follows the spec (§11.4.4): QEMU 7.2 does not implement it and lets
        // compatibility-format MSIs through whatever CFIS says (hw-facts 4.5).
        if (st & CFI) != (v & CFI) && s.ecap & (1 << 3) != 0 && stuck & CFI == 0 {
            s.gsts ^= CFI;
        }
        drop(s);
        if run_queue {
            self.process_queue();
        }
    }

    fn log_write(&self, offset: usize, value: u64, width: u8) {
        self.s.borrow_mut().writes.push(RegWrite {
            offset,
            value,
            width,
        });
    }
}

/// Faults suppressed by FPD = 1 (hw-facts 4.11 "qualified").
fn qualified(reason: u8) -> bool {
    !matches!(reason, 0x1 | 0x8 | 0x9 | 0xa | 0xb)
}

impl<M: PhysMemory> RegisterAccess for VtdModel<M> {
    fn read8(&self, offset: usize) -> u8 {
        (self.read32(offset & !3) >> ((offset & 3) * 8)) as u8
    }

    fn read16(&self, offset: usize) -> u16 {
        (self.read32(offset & !3) >> ((offset & 2) * 8)) as u16
    }

    fn read32(&self, offset: usize) -> u32 {
        if let Some(v) = self.reg32(offset) {
            return v;
        }
        match self.reg64(offset & !7) {
            Some(v) if offset & 4 != 0 => (v >> 32) as u32,
            Some(v) => v as u32,
            None => 0,
        }
    }

    fn read64(&self, offset: usize) -> u64 {
        if offset == IQH {
            let mut s = self.s.borrow_mut();
            if s.busy_queue > 0 {
                s.busy_queue -= 1;
                s.iqh = (((s.iqh >> 4) + 1) % s.iq_size) << 4;
                s.last_was_wait = s.busy_queue == 0;
            }
        }
        match self.reg64(offset) {
            Some(v) => v,
            None => self.read32(offset) as u64 | (self.read32(offset + 4) as u64) << 32,
        }
    }

    fn write8(&self, _offset: usize, _value: u8) {
        panic!("model: VT-d registers accept only 4- and 8-byte accesses (hw-facts 4.2)");
    }

    fn write16(&self, _offset: usize, _value: u16) {
        panic!("model: VT-d registers accept only 4- and 8-byte accesses (hw-facts 4.2)");
    }

    fn write32(&self, offset: usize, value: u32) {
        self.log_write(offset, value as u64, 4);
        if self.reg32(offset).is_some() {
            self.write_reg32(offset, value);
            return;
        }
        let base = offset & !7;
        if let Some(old) = self.reg64(base) {
            let high = offset & 4 != 0;
            let v = if high {
                (old & 0xffff_ffff) | (value as u64) << 32
            } else {
                (old & !0xffff_ffff) | value as u64
            };
            // CCMD and IOTLB act only on a write of the high dword (hw-facts 4.2); the
            // queue tail acts on the low dword; FRCD's F is in the high dword.
            let is_fr = {
                let (fro, nfr) = self.fro();
                base >= fro && base < fro + nfr * 16 && (base - fro) % 16 == 8
            };
            if is_fr {
                if high {
                    self.write_reg64(base, (value as u64) << 32, true);
                }
                return;
            }
            let acts = if base == IQT { !high } else { high };
            self.write_reg64(base, v, acts);
        }
    }

    fn write64(&self, offset: usize, value: u64) {
        assert!(
            !matches!(offset, FECTL | IECTL | IEADDR),
            "model: 64-bit write to {offset:#x} aborts QEMU (hw-facts 4.2)"
        );
        if self.reg64(offset).is_some() {
            self.log_write(offset, value, 8);
            self.write_reg64(offset, value, true);
        } else {
            self.write32(offset, value as u32);
            self.write32(offset + 4, (value >> 32) as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The model against the facts verified on QEMU 7.2 (hw-facts §4), with tables
    //! written by hand, independently of the driver crate.
    use super::*;
    use hal::Arena;

    const ROOT: u64 = 0x1000;
    const CTX: u64 = 0x2000;
    const L3: u64 = 0x3000;
    const L2: u64 = 0x4000;
    const L1: u64 = 0x5000;
    const QUEUE: u64 = 0x6000;
    const STATUS: u64 = 0x7000;

    fn arena() -> Arena {
        Arena::new(PhysAddr::new(0), 0x8_0000)
    }

    fn w(a: &Arena, pa: u64, v: u64) {
        a.write_u64(PhysAddr::new(pa), v);
    }

    /// hw-facts 4.15 step 1: edu at 00:01.0, DID 1, 3 levels, IOVA 0x4000_5000 → 0x1_0000.
    fn tables(a: &Arena, fpd: bool) {
        w(a, ROOT, CTX | 1);
        w(a, CTX + 8 * 16, L3 | 1 | if fpd { 2 } else { 0 });
        w(a, CTX + 8 * 16 + 8, 1 | 1 << 8);
        w(a, L3 + 8, L2 | 3); // IOVA bits 38:30 = 1
        w(a, L2, L1 | 3);
        w(a, L1 + 5 * 8, 0x1_0000 | 3);
        w(a, L1 + 6 * 8, 0x1_1000 | 1); // read-only
    }

    fn enable(m: &VtdModel<&Arena>) {
        m.write64(RTADDR, ROOT);
        m.write32(GCMD, SRTP);
        assert_eq!(m.read32(GSTS), 0x4000_0000);
        m.write32(GCMD, TE);
        assert_eq!(m.read32(GSTS), 0xc000_0000);
    }

    #[test]
    fn registers_after_reset_and_handshakes() {
        let a = arena();
        let m = VtdModel::qemu_default(&a);
        assert_eq!(m.read32(VER), 0x10);
        assert_eq!(m.read64(CAP), QEMU_CAP);
        assert_eq!(m.read64(ECAP), QEMU_ECAP);
        assert_eq!(m.read32(FECTL), 0x8000_0000);
        assert_eq!(m.read32(IECTL), 0x8000_0000);
        assert_eq!(m.read32(GCMD), 0, "GCMD reads 0");
        m.write64(RTADDR, ROOT);
        m.write32(GCMD, SRTP);
        assert_eq!(m.read32(GSTS), 0x4000_0000);
        m.write32(GCMD, TE);
        assert_eq!(m.read32(GSTS), 0xc000_0000);
        m.write64(IQA, QUEUE);
        m.write64(IQT, 0);
        m.write32(GCMD, TE | QIE);
        assert_eq!(m.read32(GSTS), 0xc400_0000);
        // WBF is ignored by QEMU: no status change.
        m.write32(GCMD, TE | QIE | WBF);
        assert_eq!(m.read32(GSTS), 0xc400_0000);
    }

    #[test]
    fn register_invalidation_completes_synchronously_unless_qi_is_on() {
        let a = arena();
        let m = VtdModel::qemu_default(&a);
        m.write64(CCMD, 0xa000_0000_0000_0000);
        assert_eq!(m.read64(CCMD), 0x2800_0000_0000_0000);
        m.write64(0xf8, 0x9000_0000_0000_0000);
        assert_eq!(m.read64(0xf8), 0x1200_0000_0000_0000);
        // Low dword alone only latches.
        let before = m.invalidation_counts();
        m.write32(CCMD, 0x1234);
        assert_eq!(m.invalidation_counts(), before);
        m.write32(CCMD + 4, 0xa000_0000);
        assert_eq!(m.invalidation_counts().0, before.0 + 1);
        // QI on: ignored, ICC stays set forever.
        m.write64(IQA, QUEUE);
        m.write32(GCMD, QIE);
        m.write64(CCMD, 0xa000_0000_0000_0000);
        assert_eq!(m.read64(CCMD), 0xa800_0000_0000_0000);
        m.write64(0xf8, 0x9000_0000_0000_0000);
        assert_eq!(m.read64(0xf8) >> 63, 1);
    }

    #[test]
    fn queued_invalidation_runs_on_tail_write_and_stops_at_errors() {
        let a = arena();
        let m = VtdModel::qemu_default(&a);
        m.write64(IQA, QUEUE);
        m.write64(IQT, 0);
        m.write32(GCMD, QIE);
        w(&a, QUEUE, 0x11); // context global
        w(&a, QUEUE + 16, 0x12); // iotlb global
        w(&a, QUEUE + 32, 5 | 1 << 5 | 0xabcd << 32);
        w(&a, QUEUE + 40, STATUS);
        m.write64(IQT, 0x30);
        assert_eq!(m.read64(IQH), 0x30);
        assert_eq!(a.read_u32(PhysAddr::new(STATUS)), 0xabcd);
        assert_eq!(m.invalidation_counts(), (1, 1));
        // Unknown type 0xF: IQE, head stays at the bad descriptor.
        w(&a, QUEUE + 48, 0xf);
        m.write64(IQT, 0x40);
        assert_eq!(m.read32(FSTS), 0x10);
        assert_eq!(m.read64(IQH), 0x30);
        // Clearing IQE without fixing it: the unit fetches it again and stops again.
        m.write32(FSTS, 0x10);
        assert_eq!((m.read32(FSTS), m.read64(IQH)), (0x10, 0x30));
        // Fix it, clear IQE (RW1C): processing resumes at once.
        w(&a, QUEUE + 48, 0x11);
        m.write32(FSTS, 0x10);
        assert_eq!(m.read32(FSTS), 0);
        assert_eq!(m.read64(IQH), 0x40);
        m.write64(IQT, 0x40);
        assert_eq!(m.read64(IQH), 0x40);
        // Wait with IF: ICS.IWC, RW1C.
        w(&a, QUEUE + 64, 5 | 1 << 4);
        w(&a, QUEUE + 72, 0);
        m.write64(IQT, 0x50);
        assert_eq!(m.read32(ICS), 1);
        m.write32(ICS, 1);
        assert_eq!(m.read32(ICS), 0);
    }

    #[test]
    #[should_panic(expected = "SW and IF")]
    fn wait_with_sw_and_if_aborts_like_qemu() {
        let a = arena();
        let m = VtdModel::qemu_default(&a);
        m.write64(IQA, QUEUE);
        m.write32(GCMD, QIE);
        w(&a, QUEUE, 5 | 3 << 4);
        w(&a, QUEUE + 8, STATUS);
        m.write64(IQT, 0x10);
    }

    #[test]
    #[should_panic(expected = "aborts QEMU")]
    fn sixty_four_bit_fectl_write_aborts_like_qemu() {
        let a = arena();
        VtdModel::qemu_default(&a).write64(FECTL, 0);
    }

    #[test]
    fn translation_and_fault_records_match_qemu() {
        let a = arena();
        tables(&a, false);
        let m = VtdModel::qemu_default(&a);
        // Translation off: untranslated.
        assert_eq!(
            m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
            0x4000_5000
        );
        enable(&m);
        assert_eq!(
            m.dma(0, 8, 0x4000_5123, 4, true).unwrap().as_u64(),
            0x1_0123
        );
        assert_eq!(
            m.dma(0, 8, 0x4000_6000, 4, false).unwrap().as_u64(),
            0x1_1000
        );
        // Read-only page written: reason 5; record as QEMU writes it.
        let f = m.dma(0, 8, 0x4000_6008, 4, true).unwrap_err();
        assert_eq!((f.reason, f.recorded), (5, true));
        assert_eq!(m.frcd(0), [0x4000_6000, 0x80ff_ff05_0000_0008]);
        assert_eq!(m.read32(FSTS), 0x2, "PPF, FRI 0");
        assert_eq!(m.read32(FECTL), 0xc000_0000, "masked: IP set, no MSI");
        assert!(m.msis().is_empty());
        // Unmasking with IP pending sends the MSI.
        m.write32(FEADDR, 0xfee0_0000);
        m.write32(FEDATA, 0x30);
        m.write32(FECTL, 0);
        assert_eq!(m.msis(), [(0xfee0_0000, 0x30)]);
        // Same SID while F set: compressed. Another SID: overflow (one register).
        assert!(!m.dma(0, 8, 0x4000_7000, 4, true).unwrap_err().recorded);
        let f = m.dma(0, 0x10, 0, 4, true).unwrap_err();
        assert_eq!((f.reason, f.recorded), (2, false));
        assert_eq!(m.read32(FSTS), 0x3);
        // Clear F (RW1C, 32-bit write to the top dword), then PFO.
        m.write32(0x22c, 0x8000_0000);
        assert_eq!(m.read32(FSTS), 0x1);
        m.write32(FSTS, 0x1);
        assert_eq!(m.read32(FSTS), 0);
        // Beyond AGAW: reason 4.
        let f = m.dma(0, 8, 1 << 40, 4, false).unwrap_err();
        assert_eq!((f.reason, f.write), (4, false));
        assert_eq!(m.frcd(0)[1] >> 62, 0b11, "F and T (read)");
        m.write64(0x228, F);
        // Root not present for bus 1.
        assert_eq!(m.dma(1, 0, 0, 4, true).unwrap_err().reason, 1);
        assert_eq!(m.frcd(0)[1], 0x8000_0001_0000_0100);
    }

    #[test]
    fn fpd_suppresses_qualified_faults_only() {
        let a = arena();
        tables(&a, true);
        let m = VtdModel::qemu_default(&a);
        enable(&m);
        let f = m.dma(0, 8, 0x9000, 4, true).unwrap_err();
        assert_eq!((f.reason, f.recorded), (5, false));
        assert_eq!(m.read32(FSTS), 0);
        // Root entry reserved bits (0xA) are never suppressed.
        w(&a, ROOT + 8, 1);
        m.write64(CCMD, 0xa000_0000_0000_0000);
        let f = m.dma(0, 8, 0x9000, 4, true).unwrap_err();
        assert_eq!((f.reason, f.recorded), (0xa, true));
    }

    #[test]
    fn context_entry_checks() {
        let a = arena();
        tables(&a, false);
        let m = VtdModel::qemu_default(&a);
        enable(&m);
        // Pass-through with AW = 2 (4-level, not in SAGAW 3-level-only): reason 3.
        w(&a, CTX + 16 * 16, 1 | 2 << 2);
        w(&a, CTX + 16 * 16 + 8, 2 | 2 << 8);
        assert_eq!(m.dma(0, 16, 0x1000, 4, true).unwrap_err().reason, 3);
        m.write32(0x22c, 0x8000_0000);
        // With AW = 1 it passes through.
        w(&a, CTX + 16 * 16 + 8, 1 | 2 << 8);
        assert_eq!(m.dma(0, 16, 0x1234, 4, true).unwrap().as_u64(), 0x1234);
        // TT = 11: reason 3; context reserved bits: 0xB.
        w(&a, CTX + 24 * 16, 1 | 3 << 2);
        w(&a, CTX + 24 * 16 + 8, 1);
        assert_eq!(m.dma(0, 24, 0, 4, true).unwrap_err().reason, 3);
        w(&a, CTX + 32 * 16, L3 | 1 | 1 << 4);
        w(&a, CTX + 32 * 16 + 8, 1);
        assert_eq!(m.dma(0, 32, 0, 4, true).unwrap_err().reason, 0xb);
        // Unreadable paging entry below the top level: 0x7.
        m.set_ram(0, 0x6000);
        w(&a, L2 + 8, 0x10_0000 | 3);
        assert_eq!(m.dma(0, 8, 0x4020_0000, 4, true).unwrap_err().reason, 7);
        // Leaf in the interrupt range: 0xE. PS at level 2 with a 2 MiB page there.
        w(&a, L2 + 16, 0xfee0_0000 | 1 << 7 | 3);
        m.set_ram(0, 1 << 40);
        assert_eq!(m.dma(0, 8, 0x4040_0000, 4, true).unwrap_err().reason, 0xe);
    }

    #[test]
    fn caches_hold_until_invalidated_by_the_right_request() {
        let a = arena();
        tables(&a, false);
        let m = VtdModel::qemu_default(&a);
        enable(&m);
        assert_eq!(
            m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
            0x1_0000
        );
        w(&a, L1 + 5 * 8, 0x2_0000 | 3);
        assert_eq!(
            m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
            0x1_0000
        );
        // Domain 2: no effect on DID 1.
        m.write64(0xf8, 0xa000_0002_0000_0000);
        assert_eq!(
            m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
            0x1_0000
        );
        // Page-selective on a neighbouring page: no effect; on the page: gone.
        m.write64(0xf0, 0x4000_6000);
        m.write64(0xf8, 0xb000_0001_0000_0000);
        assert_eq!(
            m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
            0x1_0000
        );
        // AM = 1 covers pages 4 and 5.
        m.write64(0xf0, 0x4000_4000 | 1);
        m.write64(0xf8, 0xb000_0001_0000_0000);
        assert_eq!(m.read64(0xf8) >> 57 & 3, 3);
        assert_eq!(
            m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
            0x2_0000
        );
        // AM above MAMV is rejected (IAIG = 0).
        m.write64(0xf0, 19);
        m.write64(0xf8, 0xb000_0001_0000_0000);
        assert_eq!(m.read64(0xf8) >> 57 & 3, 0);
        // SRTP clears every cache.
        w(&a, L1 + 5 * 8, 0x3_0000 | 3);
        m.write32(GCMD, TE | SRTP);
        assert_eq!(
            m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
            0x3_0000
        );
    }

    #[test]
    fn msi_remapping_by_hand_written_irtes() {
        const IRT: u64 = 0x9000;
        let a = arena();
        let m = VtdModel::qemu_default(&a);
        m.write64(IQA, QUEUE);
        m.write32(GCMD, QIE);
        m.write64(IRTA, IRT | 7);
        m.write32(GCMD, QIE | SIRTP);
        m.write32(GCMD, QIE | IRE);
        assert_eq!(m.gsts() & (IRE | SIRTP | CFI), IRE | SIRTP);
        // Entry 4: vector 0x33 to APIC 5, buses 1..=2 only (SVT = 10).
        w(&a, IRT + 4 * 16, 1 | 0x33 << 16 | 5 << 40);
        w(&a, IRT + 4 * 16 + 8, 2 << 18 | 0x0102);
        let addr = 0xfee0_0000 | 4 << 5 | 1 << 4;
        let i = m.msi_write(2, 0x10, addr, 0).unwrap();
        assert_eq!((i.vector, i.dest, i.index), (0x33, 5, Some(4)));
        let f = m.msi_write(3, 0, addr, 0).unwrap_err();
        assert_eq!((f.reason, f.recorded), (0x26, true));
        assert_eq!(m.frcd(0), [4 << 48, 0x8000_0026_0000_0300]);
        m.write32(0x22c, 0x8000_0000);
        // Entries 4..8 cached, then changed; IM = 2 from index 6 covers 4..=7.
        w(&a, IRT + 5 * 16, 1 | 0x44 << 16);
        m.msi_write(1, 0, addr + (1 << 5), 0).unwrap();
        w(&a, IRT + 4 * 16, 1 | 0x34 << 16 | 5 << 40);
        w(&a, IRT + 5 * 16, 1 | 0x45 << 16);
        w(&a, QUEUE, 4 | 1 << 4 | 2 << 27 | 6 << 32);
        w(&a, QUEUE + 8, 0);
        assert_eq!(m.msi_write(1, 0, addr, 0).unwrap().vector, 0x33);
        m.write64(IQT, 0x10);
        assert_eq!(m.iec_invalidations(), 1);
        assert_eq!(m.msi_write(1, 0, addr, 0).unwrap().vector, 0x34);
        assert_eq!(m.msi_write(1, 0, addr + (1 << 5), 0).unwrap().vector, 0x45);
        // xAPIC mode: destination bits outside 47:40 are reserved (0x24).
        w(&a, IRT + 6 * 16, 1 | 1 << 32);
        assert_eq!(
            m.msi_write(1, 0, addr + (2 << 5), 0).unwrap_err().reason,
            0x24
        );
        // CFI set: compatibility format passes again (spec; QEMU 7.2 ignores CFI).
        m.write32(GCMD, QIE | IRE | CFI);
        assert_eq!(m.msi_write(0, 8, 0xfee0_2000, 0x31).unwrap().dest, 2);
    }

    #[test]
    fn bridges_give_requester_ids_as_qemu_does() {
        let a = Arena::new(PhysAddr::new(0), 0x10_0000);
        let m = VtdModel::qemu_default(&a);
        // No fabric: the device's own ID.
        assert_eq!(m.requester_id(3, 0x18), 0x0318);
        // Root port 00:04.0 -> switch up 01:00.0 -> down 02:00.0 -> bus 3.
        let port = |bus, devfn, secondary| Bridge {
            bus,
            devfn,
            secondary,
            kind: BridgeKind::PciePort,
        };
        m.add_bridge(port(0, 0x20, 1));
        m.add_bridge(port(1, 0, 2));
        m.add_bridge(port(2, 0, 3));
        assert_eq!(m.requester_id(3, 0), 0x0300, "PCIe ports change nothing");
        // Root port 00:05.0 -> PCIe-to-PCI 04:00.0 (bus 5) -> PCI bridge 05:07.0 (bus 6).
        m.add_bridge(port(0, 0x28, 4));
        m.add_bridge(Bridge {
            bus: 4,
            devfn: 0,
            secondary: 5,
            kind: BridgeKind::PcieToPci,
        });
        m.add_bridge(Bridge {
            bus: 5,
            devfn: 0x38,
            secondary: 6,
            kind: BridgeKind::Conventional,
        });
        assert_eq!(m.requester_id(5, 0x18), 0x0500, "(secondary bus, 00.0)");
        assert_eq!(m.requester_id(6, 0x08), 0x0500, "the topmost alias wins");
        assert_eq!(m.requester_id(4, 0), 0x0400, "the bridge itself is on PCIe");
        // A bridge loop in the description cannot hang the walk.
        m.add_bridge(port(8, 0, 9));
        m.add_bridge(port(9, 0, 8));
        assert_eq!(m.requester_id(9, 0x10), 0x0910);
    }
}
