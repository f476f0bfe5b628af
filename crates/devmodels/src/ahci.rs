//! Behavioural model of an AHCI 1.x host bus adapter with SATA disks, as the AHCI
//! 1.3.1 specification describes it and QEMU 7.2's `hw/ide/ahci.c` emulates the ICH9
//! (facts only; declared here independently of the driver crate).
//!
//! The model implements `hal::RegisterAccess` (ABAR) and reaches memory only through a
//! [`DmaBus`], so a test can put an IOMMU model (or nothing) between the HBA and RAM.
//! Commands run synchronously when PxCI is written with PxCMD.ST set (QEMU's
//! `check_cmd`), one slot after another; READ/WRITE FPDMA QUEUED are only queued
//! then (their PxCI bit clears) and run later, one per PxSACT read ([`NcqOrder`]).
//! Behaviour is QEMU 7.2.6 and later (the 7.2 stable series carries the 8.1 NCQ
//! fixes: TFES on an NCQ error, clearing ST clears PxSACT and PxCI).
//!
//! Modelled:
//! * CAP (NP, NCS = 32 slots, SNCQ, SAM, S64A unless [`Options::s64a`] is false), GHC
//!   (HR resets everything and reads back 0; AE always set, as QEMU), IS computed from
//!   PxIS & PxIE, PI, VS = 1.0 (QEMU's value).
//! * Ports: CLB/FB with their alignment bits forced to 0, upper halves read-only 0
//!   without S64A (and the upper dwords of CTBA and PRD DBA ignored: a device without
//!   64-bit addressing only drives 32 address bits). PxIS W1C, PxIE (QEMU's mask),
//!   PxCMD (ST→CR, FRE→FR; clearing ST clears PxCI and un-halts the port), PxTFD, PxSIG,
//!   PxSSTS (DET 3 with a disk, 0 during COMRESET), PxSCTL (DET 1 → 0 resets the port:
//!   SIG all ones and TFD 0x7F until FIS receive is on, then the first D2H FIS with
//!   SIG 0x101 and TFD 0x0130 as QEMU's `ahci_init_d2h`), PxSERR W1C, PxCI.
//! * A command: the 32-byte header at CLB + 32·slot (CFL, W, PRDTL, CTBA), the H2D
//!   register FIS at CTBA, and PRDTL PRD entries at CTBA + 0x80 whose byte count is
//!   DBC + 1; an odd count (DBC bit 0 clear) is rejected (spec §4.2.3.3: bit 0 must be
//!   1), as a host bus data error. Data moves byte-granularly across the entries;
//!   PRDBC gets the bytes moved; a D2H FIS goes to FB + 0x40; PxIS.DHRS.
//! * Commands: IDENTIFY DEVICE (0xEC), READ/WRITE DMA EXT (0x25/0x35), FLUSH CACHE EXT
//!   (0xEA); anything else is aborted (ABRT). An LBA range past the end is IDNF.
//! * Errors stop the port (spec §6.1.2): PxCI keeps the failed slot, the port processes
//!   nothing more until software clears and sets PxCMD.ST. Task-file errors set
//!   PxTFD.STS.ERR, the error register and PxIS.TFES, and the D2H FIS carries the
//!   failing LBA; a PRDT too short for the transfer is PxIS.OFS; a DMA the bus refuses
//!   (outside RAM, an IOMMU fault) is PxIS.HBFS.
//! * NCQ (`ncq.rs`): IDENTIFY words 75/76 (depth 32 as QEMU, or
//!   [`AhciModel::set_ncq_depth`]); the tag in bits 7:3 of the sector count, the count
//!   in FEATURES; completion by a Set Device Bits FIS at FB + 0x58 that clears the
//!   tag's PxSACT bit and raises PxIS.SDBS. A failed command (media error, range)
//!   keeps its PxSACT bit, gets STS.ERR + ABRT (QEMU's `ncq_err`) and PxIS.TFES; the
//!   port is not halted. COMRESET and HBA reset drop every queued command; clearing
//!   ST does not (QEMU's requests go on). In order, newest first, or held for
//!   [`AhciModel::ncq_complete`]; one tag can be made to never complete.
//! * Fault injection: a media error (UNC, 0x40) at a chosen LBA
//!   ([`AhciModel::set_media_error`]), a port that accepts commands and never
//!   completes them ([`AhciModel::set_hung`]), an HBA without S64A.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use hal::RegisterAccess;

mod bus;
mod cmd;
mod mmio;
mod ncq;

pub use bus::{BusFault, DmaBus, PhysBus};
pub use ncq::NcqOrder;

/// Model construction options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Ports (1-32; the ICH9 has 6).
    pub ports: usize,
    /// CAP.S64A: 64-bit addressing.
    pub s64a: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ports: 6,
            s64a: true,
        }
    }
}

/// A SATA disk: 512-byte sectors in a byte vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Contents.
    pub data: Vec<u8>,
    /// IDENTIFY model string.
    pub model: String,
    /// IDENTIFY serial number.
    pub serial: String,
}

impl Disk {
    /// A disk of `sectors` zeroed sectors.
    pub fn new(sectors: usize, model: &str, serial: &str) -> Disk {
        Disk {
            data: vec![0; sectors * SECTOR],
            model: String::from(model),
            serial: String::from(serial),
        }
    }

    /// Sectors on the disk.
    pub fn sectors(&self) -> u64 {
        (self.data.len() / SECTOR) as u64
    }
}

/// Sector size of model disks.
pub const SECTOR: usize = 512;

/// Something the model refused or noticed, for assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelError {
    /// A PRD entry with an odd byte count (DBC bit 0 clear).
    OddByteCount {
        /// Port.
        port: usize,
        /// PRD index.
        entry: usize,
        /// DBC + 1.
        bytes: u32,
    },
    /// The PRDT holds fewer bytes than the command moves.
    PrdtShort {
        /// Port.
        port: usize,
        /// Bytes in the PRDT.
        prdt: u64,
        /// Bytes the command moves.
        needed: u64,
    },
    /// A DMA the bus refused.
    Bus {
        /// Port.
        port: usize,
        /// The fault.
        fault: BusFault,
    },
    /// A command FIS that is not a register H2D command.
    BadFis {
        /// Port.
        port: usize,
        /// FIS type byte.
        fis_type: u8,
    },
    /// A register access the model does not support (narrow write, unknown offset).
    BadAccess {
        /// Offset.
        offset: usize,
    },
    /// An FPDMA command whose tag is not its command slot (QEMU traces it).
    TagSlotMismatch {
        /// Port.
        port: usize,
        /// Tag from the FIS.
        tag: usize,
        /// Command slot.
        slot: usize,
    },
    /// An FPDMA command with a tag still queued (QEMU drops the command).
    TagInUse {
        /// Port.
        port: usize,
        /// Tag.
        tag: usize,
    },
}

/// One command the model fetched, with its PRDT as the HBA read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdLog {
    /// Port.
    pub port: usize,
    /// Slot.
    pub slot: usize,
    /// ATA command.
    pub command: u8,
    /// 48-bit LBA from the FIS.
    pub lba: u64,
    /// Sector count from the FIS (0 = 65536 for DMA EXT commands; FEATURES for
    /// FPDMA commands).
    pub count: u32,
    /// The NCQ tag of an FPDMA command.
    pub tag: Option<usize>,
    /// Header W bit.
    pub write: bool,
    /// Command table address (as the HBA used it).
    pub ctba: u64,
    /// PRD entries: (data base address, byte count = DBC + 1).
    pub prdt: Vec<(u64, u32)>,
    /// Completed without error (FPDMA commands are logged when they end).
    pub ok: bool,
}

const PORT_BASE: usize = 0x100;
const PORT_LEN: usize = 0x80;
const IS_DHRS: u32 = 1 << 0;
const IS_OFS: u32 = 1 << 24;
const IS_HBDS: u32 = 1 << 28;
const IS_HBFS: u32 = 1 << 29;
const IS_TFES: u32 = 1 << 30;
const IE_MASK: u32 = 0xfdc0_00ff;
const CMD_ST: u32 = 1 << 0;
const CMD_SUD: u32 = 1 << 1;
const CMD_POD: u32 = 1 << 2;
const CMD_FRE: u32 = 1 << 4;
const CMD_FR: u32 = 1 << 14;
const CMD_CR: u32 = 1 << 15;
const CMD_CCS_SHIFT: u32 = 8;
const CMD_RO: u32 = CMD_FR | CMD_CR | (0x1f << CMD_CCS_SHIFT);
const STS_ERR: u8 = 0x01;
const STS_DSC: u8 = 0x10;
const STS_DRDY: u8 = 0x40;
const STS_BSY: u8 = 0x80;
const ERR_UNC: u8 = 0x40;
const ERR_IDNF: u8 = 0x10;
const ERR_ABRT: u8 = 0x04;
const RFIS: u64 = 0x40;

#[derive(Default)]
struct Port {
    clb: u64,
    fb: u64,
    is: u32,
    ie: u32,
    cmd: u32,
    tfd: u32,
    sig: u32,
    sctl: u32,
    serr: u32,
    sact: u32,
    ci: u32,
    disk: Option<Disk>,
    media_errors: Vec<u64>,
    hung: bool,
    halted: bool,
    ncq: Vec<ncq::NcqCmd>,
    ncq_order: NcqOrder,
    ncq_stuck: u32,
    ncq_eager: bool,
    /// IDENTIFY words 75/76: queue depth, 0 for no NCQ.
    ncq_depth: u16,
    init_d2h_sent: bool,
    flushes: usize,
    resets: usize,
}

struct State {
    cap: u32,
    ghc: u32,
    ports: Vec<Port>,
    log: Vec<CmdLog>,
    errors: Vec<ModelError>,
}

/// The HBA model over bus `B`.
pub struct AhciModel<B: DmaBus> {
    bus: B,
    s64a: bool,
    s: RefCell<State>,
}

/// Outcome of one command.
enum Done {
    Ok(u32),
    TaskFile { status: u8, error: u8, lba: u64 },
    Stop(u32),
}

impl<B: DmaBus> AhciModel<B> {
    /// An HBA after power-on: `opts.ports` empty ports.
    pub fn new(bus: B, opts: Options) -> Self {
        let n = opts.ports.clamp(1, 32);
        let mut cap = (n as u32 - 1) | (31 << 8) | (1 << 30) | (1 << 18) | (1 << 20);
        if opts.s64a {
            cap |= 1 << 31;
        }
        let m = AhciModel {
            bus,
            s64a: opts.s64a,
            s: RefCell::new(State {
                cap,
                ghc: 1 << 31,
                ports: (0..n).map(|_| Port::default()).collect(),
                log: Vec::new(),
                errors: Vec::new(),
            }),
        };
        m.hba_reset();
        m
    }

    /// Attaches `disk` to `port` (before the driver probes).
    pub fn attach(&self, port: usize, disk: Disk) {
        let mut s = self.s.borrow_mut();
        s.ports[port].disk = Some(disk);
        s.ports[port].ncq_depth = 32;
        Self::reset_port(&mut s.ports[port]);
    }

    /// Makes reads and writes touching `lba` on `port` fail with a media error (UNC).
    pub fn set_media_error(&self, port: usize, lba: u64) {
        self.s.borrow_mut().ports[port].media_errors.push(lba);
    }

    /// Makes `port` accept commands and never complete them (or heals it).
    pub fn set_hung(&self, port: usize, hung: bool) {
        self.s.borrow_mut().ports[port].hung = hung;
    }

    /// A copy of `len` bytes at byte `off` of the disk on `port`.
    pub fn disk_bytes(&self, port: usize, off: usize, len: usize) -> Vec<u8> {
        let s = self.s.borrow();
        match &s.ports[port].disk {
            Some(d) => d.data[off..off + len].to_vec(),
            None => Vec::new(),
        }
    }

    /// Writes `data` at byte `off` of the disk on `port` (as the host writing an image).
    pub fn write_disk(&self, port: usize, off: usize, data: &[u8]) {
        let mut s = self.s.borrow_mut();
        if let Some(d) = &mut s.ports[port].disk {
            d.data[off..off + data.len()].copy_from_slice(data);
        }
    }

    /// Commands fetched so far.
    pub fn commands(&self) -> Vec<CmdLog> {
        self.s.borrow().log.clone()
    }

    /// Refusals so far.
    pub fn errors(&self) -> Vec<ModelError> {
        self.s.borrow().errors.clone()
    }

    /// FLUSH CACHE EXT commands completed on `port`.
    pub fn flushes(&self, port: usize) -> usize {
        self.s.borrow().ports[port].flushes
    }

    /// COMRESETs seen on `port`.
    pub fn resets(&self, port: usize) -> usize {
        self.s.borrow().ports[port].resets
    }

    /// Whether the interrupt line would be asserted (IS ≠ 0 and GHC.IE).
    pub fn irq_pending(&self) -> bool {
        let s = self.s.borrow();
        s.ghc & 2 != 0 && Self::is(&s) != 0
    }

    fn is(s: &State) -> u32 {
        s.ports
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is & p.ie != 0)
            .fold(0, |a, (i, _)| a | 1 << i)
    }

    fn hba_reset(&self) {
        let mut s = self.s.borrow_mut();
        s.ghc = 1 << 31;
        for p in s.ports.iter_mut() {
            let keep = (p.disk.take(), core::mem::take(&mut p.media_errors), p.hung);
            let (flushes, resets) = (p.flushes, p.resets);
            let ncq = (p.ncq_order, p.ncq_stuck, p.ncq_depth, p.ncq_eager);
            *p = Port {
                disk: keep.0,
                media_errors: keep.1,
                hung: keep.2,
                flushes,
                resets,
                ncq_order: ncq.0,
                ncq_stuck: ncq.1,
                ncq_depth: ncq.2,
                ncq_eager: ncq.3,
                cmd: CMD_SUD | CMD_POD,
                ..Port::default()
            };
            Self::reset_port(p);
        }
    }

    /// QEMU's `ahci_reset_port`.
    fn reset_port(p: &mut Port) {
        p.serr = 0;
        p.sact = 0;
        // QEMU cancels every queued NCQ command (`blk_aio_cancel`): none moves data.
        p.ncq.clear();
        p.ncq_stuck = 0;
        p.tfd = 0x7f;
        p.sig = 0xffff_ffff;
        p.init_d2h_sent = false;
        p.halted = false;
    }

    fn ssts(p: &Port) -> u32 {
        if p.disk.is_some() && p.sctl & 0xf != 1 {
            0x113
        } else {
            0
        }
    }

    fn addr(&self, lo: u32, hi: u32) -> u64 {
        if self.s64a {
            lo as u64 | (hi as u64) << 32
        } else {
            lo as u64
        }
    }

    /// Writes a D2H register FIS into the port's received-FIS area, if receiving.
    fn d2h(&self, i: usize, p: &mut Port, status: u8, error: u8, lba: u64, count: u16) {
        if p.cmd & CMD_FR == 0 {
            return;
        }
        let l = lba.to_le_bytes();
        let c = count.to_le_bytes();
        let fis = [
            0x34, 0x40, status, error, l[0], l[1], l[2], 0x40, l[3], l[4], l[5], 0, c[0], c[1], 0,
            0, 0, 0, 0, 0,
        ];
        p.tfd = (error as u32) << 8 | status as u32;
        if let Err(fault) = self.bus.dma_write(p.fb + RFIS, &fis) {
            self.s
                .try_borrow_mut()
                .map(|mut s| s.errors.push(ModelError::Bus { port: i, fault }))
                .ok();
            p.is |= IS_HBFS;
            return;
        }
        if status & STS_ERR != 0 {
            p.is |= IS_TFES;
        }
        p.is |= IS_DHRS;
    }

    fn port_read(&self, i: usize, reg: usize) -> u32 {
        let s = self.s.borrow();
        let p = &s.ports[i];
        match reg {
            0x00 => p.clb as u32,
            0x04 => (p.clb >> 32) as u32,
            0x08 => p.fb as u32,
            0x0c => (p.fb >> 32) as u32,
            0x10 => p.is,
            0x14 => p.ie,
            0x18 => p.cmd,
            0x20 => p.tfd,
            0x24 => p.sig,
            0x28 => Self::ssts(p),
            0x2c => p.sctl,
            0x30 => p.serr,
            0x34 => p.sact,
            0x38 => p.ci,
            _ => 0,
        }
    }

    fn port_write(&self, i: usize, reg: usize, v: u32) {
        // The port is taken out of the state while it runs commands, so DMA (which may
        // call back into nothing here) never overlaps a RefCell borrow.
        let mut p = core::mem::take(&mut self.s.borrow_mut().ports[i]);
        match reg {
            0x00 => p.clb = (p.clb & !0xffff_ffff) | (v & !0x3ff) as u64,
            0x04 if self.s64a => p.clb = (p.clb & 0xffff_ffff) | (v as u64) << 32,
            0x08 => p.fb = (p.fb & !0xffff_ffff) | (v & !0xff) as u64,
            0x0c if self.s64a => p.fb = (p.fb & 0xffff_ffff) | (v as u64) << 32,
            0x04 | 0x0c => {}
            0x10 => p.is &= !v,
            0x14 => p.ie = v & IE_MASK,
            0x18 => {
                p.cmd = (p.cmd & CMD_RO) | (v & !CMD_RO & !(0xf << 28));
                if p.cmd & CMD_ST != 0 {
                    p.cmd |= CMD_CR;
                } else {
                    p.cmd &= !(CMD_CR | (0x1f << CMD_CCS_SHIFT));
                    p.ci = 0;
                    p.sact = 0;
                    p.halted = false;
                }
                if p.cmd & CMD_FRE != 0 {
                    p.cmd |= CMD_FR;
                    if !p.init_d2h_sent && p.disk.is_some() {
                        p.init_d2h_sent = true;
                        p.sig = 0x0000_0101;
                        // QEMU: SEEK_STAT | WRERR_STAT, error 1 (diagnostics passed).
                        self.d2h(i, &mut p, 0x30, 0x01, 1, 1);
                    }
                } else {
                    p.cmd &= !CMD_FR;
                }
                self.run(i, &mut p);
            }
            0x2c => {
                if p.sctl & 0xf == 1 && v & 0xf == 0 {
                    p.resets += 1;
                    Self::reset_port(&mut p);
                }
                p.sctl = v;
            }
            0x30 => p.serr &= !v,
            0x34 => p.sact |= v,
            0x38 => {
                p.ci |= v;
                self.run(i, &mut p);
            }
            _ => self.s.borrow_mut().errors.push(ModelError::BadAccess {
                offset: PORT_BASE + i * PORT_LEN + reg,
            }),
        }
        self.s.borrow_mut().ports[i] = p;
    }

    /// QEMU's `check_cmd`: runs issued slots in order while started and not halted.
    fn run(&self, i: usize, p: &mut Port) {
        if p.cmd & CMD_ST == 0 || p.halted || p.ci == 0 {
            return;
        }
        if p.hung || p.disk.is_none() {
            p.tfd |= STS_BSY as u32;
            return;
        }
        for slot in 0..32 {
            if p.ci & (1 << slot) == 0 {
                continue;
            }
            if self.command(i, p, slot) {
                p.ci &= !(1 << slot);
            } else {
                p.halted = true;
                p.cmd = (p.cmd & !(0x1f << CMD_CCS_SHIFT)) | (slot as u32) << CMD_CCS_SHIFT;
                return;
            }
        }
    }

    fn model_error(&self, e: ModelError) {
        self.s.borrow_mut().errors.push(e);
    }
}
#[cfg(test)]
mod tests {
    //! The model driven by hand (no driver): commands written into arena memory.
    use super::*;
    use hal::{Arena, PhysAddr, PhysMemory};

    const BASE: u64 = 0x10_0000;
    const CLB: u64 = BASE;
    const FB: u64 = BASE + 0x400;
    const CT: u64 = BASE + 0x1000;
    const DATA: u64 = BASE + 0x4000;
    const IS_SDBS_T: u32 = 1 << 3;

    fn setup(a: &Arena, s64a: bool) -> AhciModel<PhysBus<&Arena>> {
        let m = AhciModel::new(
            PhysBus::new(a, &[(BASE, a.size() as u64)]),
            Options { ports: 2, s64a },
        );
        let mut d = Disk::new(16, "MODEL DISK", "S1");
        for (i, b) in d.data.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        m.attach(0, d);
        m.write32(0x100, CLB as u32);
        m.write32(0x108, FB as u32);
        m.write32(0x114, u32::MAX);
        m.write32(0x118, CMD_FRE | CMD_ST);
        m
    }

    /// Slot 0: `command` at `lba` for `count` sectors with the given PRD entries
    /// (address, raw DW3).
    fn issue(
        a: &Arena,
        m: &AhciModel<PhysBus<&Arena>>,
        command: u8,
        lba: u64,
        count: u16,
        prds: &[(u64, u32)],
    ) {
        let fis = [
            0x27u8,
            0x80,
            command,
            0,
            lba as u8,
            (lba >> 8) as u8,
            (lba >> 16) as u8,
            0x40,
            (lba >> 24) as u8,
            0,
            0,
            0,
            count as u8,
            (count >> 8) as u8,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        a.write(PhysAddr::new(CT), &fis);
        for (k, &(addr, dw3)) in prds.iter().enumerate() {
            let e = CT + 0x80 + 16 * k as u64;
            a.write_u64(PhysAddr::new(e), addr);
            a.write_u32(PhysAddr::new(e + 8), 0);
            a.write_u32(PhysAddr::new(e + 12), dw3);
        }
        a.write_u32(PhysAddr::new(CLB), 5 | (prds.len() as u32) << 16);
        a.write_u32(PhysAddr::new(CLB + 4), 0);
        a.write_u64(PhysAddr::new(CLB + 8), CT);
        m.write32(0x110, u32::MAX);
        m.write32(0x138, 1);
    }

    #[test]
    fn byte_granular_prdt_moves_dbc_plus_one_bytes_each() {
        let a = Arena::new(PhysAddr::new(BASE), 0x10000);
        let m = setup(&a, true);
        assert_eq!(m.read32(0x124), 0x101, "signature after FIS receive is on");
        assert_eq!(m.read32(0x120) & 0x88, 0, "not busy");
        // 3 sectors into pieces of 2, 1000 and 534 bytes at odd-ish offsets.
        let prds = [(DATA + 2, 1), (DATA + 0x1006, 999), (DATA + 0x2802, 533)];
        issue(&a, &m, 0x25, 2, 3, &prds);
        assert_eq!(m.read32(0x138), 0, "completed");
        assert_eq!(a.read_u32(PhysAddr::new(CLB + 4)), 1536, "PRDBC");
        let disk = m.disk_bytes(0, 1024, 1536);
        assert_eq!(a.to_vec(PhysAddr::new(DATA + 2), 2), disk[..2]);
        assert_eq!(a.to_vec(PhysAddr::new(DATA + 0x1006), 1000), disk[2..1002]);
        assert_eq!(a.to_vec(PhysAddr::new(DATA + 0x2802), 534), disk[1002..]);
        assert_eq!(a.to_vec(PhysAddr::new(DATA), 2), [0, 0], "nothing before");
        assert_eq!(m.read32(0x110) & IS_DHRS, IS_DHRS);
        assert_eq!(a.to_vec(PhysAddr::new(FB + 0x40), 3), [0x34, 0x40, 0x50]);
        assert_eq!(m.read32(0x08), 1, "IS: port 0");
        let log = m.commands();
        assert_eq!(
            log[0].prdt,
            [(DATA + 2, 2), (DATA + 0x1006, 1000), (DATA + 0x2802, 534)]
        );
    }

    #[test]
    fn an_odd_byte_count_is_refused_and_halts_the_port() {
        let a = Arena::new(PhysAddr::new(BASE), 0x10000);
        let m = setup(&a, true);
        // DBC 0x1ff + 1 = 512 is fine; DBC 0x200 → 513 bytes is not.
        issue(&a, &m, 0x25, 0, 2, &[(DATA, 0x1ff), (DATA + 0x1000, 0x200)]);
        assert_eq!(m.read32(0x138), 1, "slot still issued");
        assert_eq!(m.read32(0x110) & IS_HBDS, IS_HBDS);
        assert_eq!(
            m.errors(),
            [ModelError::OddByteCount {
                port: 0,
                entry: 1,
                bytes: 513
            }]
        );
        assert_eq!(a.to_vec(PhysAddr::new(DATA), 2), [0, 0], "no data moved");
        // Halted: a new issue does nothing until ST is cycled, which clears PxCI.
        m.write32(0x138, 2);
        assert_eq!(m.read32(0x138), 3);
        m.write32(0x118, CMD_FRE);
        assert_eq!(m.read32(0x138), 0);
        assert_eq!(m.read32(0x118) & CMD_CR, 0);
        m.write32(0x118, CMD_FRE | CMD_ST);
        issue(&a, &m, 0x25, 0, 1, &[(DATA, 0x1ff)]);
        assert_eq!(m.read32(0x138), 0);
    }

    #[test]
    fn short_prdt_media_error_and_range_errors() {
        let a = Arena::new(PhysAddr::new(BASE), 0x10000);
        let m = setup(&a, true);
        issue(&a, &m, 0x25, 0, 2, &[(DATA, 0x1ff)]);
        assert_eq!(m.read32(0x110) & IS_OFS, IS_OFS);
        m.write32(0x118, CMD_FRE);
        m.write32(0x118, CMD_FRE | CMD_ST);
        m.set_media_error(0, 5);
        issue(&a, &m, 0x35, 4, 2, &[(DATA, 0x3ff)]);
        assert_eq!(m.read32(0x120), 0x4041, "TFD: UNC, DRDY|ERR");
        assert_eq!(m.read32(0x110) & IS_TFES, IS_TFES);
        assert_eq!(
            a.read_u32(PhysAddr::new(FB + 0x44)) & 0xff_ffff,
            5,
            "failing LBA in the D2H FIS"
        );
        m.write32(0x118, CMD_FRE);
        m.write32(0x118, CMD_FRE | CMD_ST);
        issue(&a, &m, 0x25, 15, 2, &[(DATA, 0x3ff)]);
        assert_eq!(m.read32(0x120) >> 8, 0x10, "IDNF past the end");
    }

    #[test]
    fn without_s64a_upper_address_halves_are_ignored_and_comreset_resets() {
        let a = Arena::new(PhysAddr::new(BASE), 0x10000);
        let m = setup(&a, false);
        assert_eq!(m.read32(0) >> 31, 0, "CAP.S64A clear");
        m.write32(0x104, 0x1);
        assert_eq!(m.read32(0x104), 0);
        // A PRD whose DBAU is set still lands below 4 GiB.
        issue(&a, &m, 0x25, 0, 1, &[(DATA | 1 << 32, 0x1ff)]);
        assert_eq!(m.read32(0x138), 0);
        assert_eq!(a.to_vec(PhysAddr::new(DATA), 512), m.disk_bytes(0, 0, 512));
        // COMRESET: DET 1 → link down, DET 0 → reset, signature after FRE again.
        m.write32(0x118, 0);
        m.write32(0x12c, 1);
        assert_eq!(m.read32(0x128) & 0xf, 0);
        m.write32(0x12c, 0);
        assert_eq!(m.read32(0x128) & 0xf, 3);
        assert_eq!((m.read32(0x124), m.read32(0x120)), (0xffff_ffff, 0x7f));
        m.write32(0x118, CMD_FRE);
        assert_eq!((m.read32(0x124), m.read32(0x120)), (0x101, 0x130));
        assert_eq!(m.resets(0), 1);
        // No disk on port 1.
        assert_eq!(m.read32(0x1a8), 0);
    }

    /// Slot `tag`: an FPDMA command (`command` 0x60/0x61) for one PRD entry of
    /// `sectors` sectors at `data`, then PxSACT and PxCI.
    fn issue_ncq(
        a: &Arena,
        m: &AhciModel<PhysBus<&Arena>>,
        command: u8,
        tag: usize,
        lba: u64,
        sectors: u16,
        data: u64,
    ) {
        let ct = CT + 0x100 * tag as u64;
        let fis = [
            0x27u8,
            0x80,
            command,
            sectors as u8,
            lba as u8,
            (lba >> 8) as u8,
            (lba >> 16) as u8,
            0x40,
            (lba >> 24) as u8,
            0,
            0,
            (sectors >> 8) as u8,
            (tag as u8) << 3,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        a.write(PhysAddr::new(ct), &fis);
        a.write_u64(PhysAddr::new(ct + 0x80), data);
        a.write_u32(PhysAddr::new(ct + 0x88), 0);
        a.write_u32(PhysAddr::new(ct + 0x8c), sectors as u32 * 512 - 1);
        let hdr = CLB + 32 * tag as u64;
        let w = if command == 0x61 { 1 << 6 } else { 0 };
        a.write_u32(PhysAddr::new(hdr), 5 | w | 1 << 16);
        a.write_u32(PhysAddr::new(hdr + 4), 0);
        a.write_u64(PhysAddr::new(hdr + 8), ct);
        m.write32(0x134, 1 << tag);
        m.write32(0x138, 1 << tag);
    }

    #[test]
    fn ncq_commands_queue_then_end_by_sdb_fis_in_the_chosen_order() {
        let a = Arena::new(PhysAddr::new(BASE), 0x10000);
        let m = setup(&a, true);
        m.set_ncq_order(0, NcqOrder::Lifo);
        for tag in 0..3 {
            issue_ncq(
                &a,
                &m,
                0x60,
                tag,
                2 * tag as u64,
                1,
                DATA + 0x200 * tag as u64,
            );
        }
        // Queued: PxCI clear at once, PxSACT holds the tags, no data yet.
        assert_eq!(m.read32(0x138), 0);
        assert_eq!(m.ncq_queued(0), [0, 1, 2]);
        assert_eq!(a.to_vec(PhysAddr::new(DATA), 2), [0, 0]);
        // Each PxSACT read runs one, newest first.
        assert_eq!(m.read32(0x134), 0b011);
        assert_eq!(
            a.to_vec(PhysAddr::new(DATA + 0x400), 512),
            m.disk_bytes(0, 4 * 512, 512)
        );
        assert_eq!(m.read32(0x110) & IS_SDBS_T, IS_SDBS_T);
        assert_eq!(
            a.to_vec(PhysAddr::new(FB + 0x58), 8),
            [0xa1, 0x40, 0x50, 0, 4, 0, 0, 0]
        );
        assert_eq!(m.read32(0x134), 0b001);
        assert_eq!(m.read32(0x134), 0);
        assert_eq!(a.to_vec(PhysAddr::new(DATA), 512), m.disk_bytes(0, 0, 512));
        let tags: Vec<Option<usize>> = m.commands().iter().map(|c| c.tag).collect();
        assert_eq!(tags, [Some(2), Some(1), Some(0)]);
        // A media error on one tag: TFES, ERR + ABRT, its bit stays; the others end.
        m.write32(0x110, u32::MAX);
        m.set_media_error(0, 9);
        m.set_ncq_order(0, NcqOrder::Fifo);
        issue_ncq(&a, &m, 0x60, 3, 9, 1, DATA);
        issue_ncq(&a, &m, 0x61, 4, 10, 1, DATA + 0x200);
        assert_eq!(m.read32(0x134), 0b11000, "tag 3 failed, tag 4 not run yet");
        assert_eq!(m.read32(0x110) & IS_TFES, IS_TFES);
        assert_eq!(m.read32(0x120) & 0xff01, 0x0401, "ABRT, STS.ERR");
        assert_eq!(m.read32(0x134), 0b01000, "tag 4 still ends");
        assert!(!m.commands()[3].ok && m.commands()[4].ok);
        // Held commands run only when asked; COMRESET drops what is queued.
        m.set_ncq_order(0, NcqOrder::Hold);
        issue_ncq(&a, &m, 0x60, 5, 0, 1, DATA);
        issue_ncq(&a, &m, 0x60, 6, 0, 1, DATA);
        assert_eq!(m.read32(0x134), 0b1101000);
        assert!(m.ncq_complete(0, 6));
        assert_eq!(m.read32(0x134), 0b0101000);
        m.write32(0x118, 0);
        m.write32(0x12c, 1);
        m.write32(0x12c, 0);
        assert!(m.ncq_queued(0).is_empty());
        assert_eq!(m.read32(0x134), 0);
        assert!(!m.ncq_complete(0, 5));
        assert!(m.errors().is_empty(), "{:?}", m.errors());
    }
}
