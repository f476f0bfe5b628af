//! Native Command Queuing (QEMU 7.2's `process_ncq_command` / `ncq_cb` /
//! `ahci_write_fis_sdb`, with the 7.2.6 stable fixes): READ/WRITE FPDMA QUEUED are
//! queued when fetched (their PxCI bit clears at once), run later, one at a time, in
//! the order [`NcqOrder`] picks, and end with a Set Device Bits FIS that clears their
//! PxSACT bits. A failed one keeps its PxSACT bit, sets STS.ERR with ABRT in the
//! error register (QEMU's `ncq_err`) and raises PxIS.TFES; the others go on.
//! [`AhciModel::set_ncq_eager`] makes every port register read a moment in which one
//! queued command runs.

use super::*;

/// READ FPDMA QUEUED.
pub(super) const READ_FPDMA: u8 = 0x60;
/// WRITE FPDMA QUEUED.
pub(super) const WRITE_FPDMA: u8 = 0x61;
/// Set Device Bits FIS in the received-FIS area.
const SDB_FIS: u64 = 0x58;
const IS_SDBS: u32 = 1 << 3;

/// Which queued command the model runs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NcqOrder {
    /// The oldest first, one each time PxSACT is read.
    #[default]
    Fifo,
    /// The newest first, one each time PxSACT is read (out of order).
    Lifo,
    /// None on their own: only [`AhciModel::ncq_complete`] runs one.
    Hold,
}

/// One queued command, as fetched.
#[derive(Debug, Clone)]
pub(super) struct NcqCmd {
    tag: usize,
    log: CmdLog,
}

impl<B: DmaBus> AhciModel<B> {
    /// How queued commands on `port` are picked to run.
    pub fn set_ncq_order(&self, port: usize, order: NcqOrder) {
        self.s.borrow_mut().ports[port].ncq_order = order;
    }

    /// Runs a queued command on every read of a `port` register, not only PxSACT:
    /// the device goes on with its queue while the driver does anything else (a
    /// stop of the port included: QEMU's requests go on after ST is cleared).
    pub fn set_ncq_eager(&self, port: usize, eager: bool) {
        self.s.borrow_mut().ports[port].ncq_eager = eager;
    }

    /// The queue depth the disk on `port` reports in IDENTIFY (words 75/76; 0: no
    /// NCQ). QEMU reports 32.
    pub fn set_ncq_depth(&self, port: usize, depth: u16) {
        self.s.borrow_mut().ports[port].ncq_depth = depth;
    }

    /// Makes the queued command with `tag` on `port` never complete (until a
    /// COMRESET drops it).
    pub fn set_ncq_stuck(&self, port: usize, tag: usize) {
        self.s.borrow_mut().ports[port].ncq_stuck |= 1 << tag;
    }

    /// Tags queued on `port` and not yet run.
    pub fn ncq_queued(&self, port: usize) -> Vec<usize> {
        self.s.borrow().ports[port]
            .ncq
            .iter()
            .map(|c| c.tag)
            .collect()
    }

    /// Runs the queued command with `tag` on `port` now; false if none is queued.
    pub fn ncq_complete(&self, port: usize, tag: usize) -> bool {
        let mut p = core::mem::take(&mut self.s.borrow_mut().ports[port]);
        let ok = match p.ncq.iter().position(|c| c.tag == tag) {
            Some(k) => {
                let c = p.ncq.remove(k);
                self.ncq_run(port, &mut p, c);
                true
            }
            None => false,
        };
        self.s.borrow_mut().ports[port] = p;
        ok
    }

    /// Queues a fetched FPDMA command (QEMU `process_ncq_command`): the tag is bits
    /// 7:3 of the sector count, the count is in FEATURES.
    pub(super) fn ncq_queue(&self, p: &mut Port, slot: usize, cfis: &[u8; 20], mut log: CmdLog) {
        let tag = (cfis[12] >> 3) as usize;
        log.count = u16::from_le_bytes([cfis[3], cfis[11]]) as u32;
        log.tag = Some(tag);
        if tag != slot {
            // QEMU only traces this; the model records it for tests.
            self.model_error(ModelError::TagSlotMismatch {
                port: log.port,
                tag,
                slot,
            });
        }
        if p.ncq.iter().any(|c| c.tag == tag) {
            // QEMU: "tag %d already used", the command is dropped.
            self.model_error(ModelError::TagInUse {
                port: log.port,
                tag,
            });
            return;
        }
        p.ncq.push(NcqCmd { tag, log });
    }

    /// Runs one queued command if the port's order says so (on a PxSACT read).
    pub(super) fn ncq_tick(&self, i: usize) {
        let mut p = core::mem::take(&mut self.s.borrow_mut().ports[i]);
        if !p.hung {
            let runnable = |c: &&NcqCmd| p.ncq_stuck & (1 << c.tag) == 0;
            let pick = match p.ncq_order {
                NcqOrder::Fifo => p.ncq.iter().position(|c| runnable(&c)),
                NcqOrder::Lifo => p.ncq.iter().rposition(|c| runnable(&c)),
                NcqOrder::Hold => None,
            };
            if let Some(k) = pick {
                let c = p.ncq.remove(k);
                self.ncq_run(i, &mut p, c);
            }
        }
        self.s.borrow_mut().ports[i] = p;
    }

    /// QEMU `execute_ncq_command` + `ncq_cb` + `ncq_finish`: moves the data, then
    /// the SDB FIS.
    fn ncq_run(&self, i: usize, p: &mut Port, c: NcqCmd) {
        let mut log = c.log;
        let command = if log.command == READ_FPDMA {
            0x25
        } else {
            0x35
        };
        let done = self.execute(i, p, command, log.lba, log.count, &log.prdt);
        let (status, error) = match done {
            Done::Ok(_) => (STS_DRDY | STS_DSC, 0),
            // QEMU's `ncq_err`: every NCQ failure is ABRT with STS.ERR.
            Done::TaskFile { .. } => (STS_DRDY | STS_ERR, ERR_ABRT),
            Done::Stop(bits) => {
                p.is |= bits;
                (STS_DRDY | STS_ERR, ERR_ABRT)
            }
        };
        log.ok = status & STS_ERR == 0;
        let finished = if log.ok { 1u32 << c.tag } else { 0 };
        // `ahci_write_fis_sdb`: only while FIS receive is on.
        if p.cmd & CMD_FRE != 0 {
            let mut fis = [0u8; 8];
            fis[0] = 0xa1;
            fis[1] = 0x40;
            fis[2] = status & 0x77;
            fis[3] = error;
            fis[4..].copy_from_slice(&finished.to_le_bytes());
            if let Err(fault) = self.bus.dma_write(p.fb + SDB_FIS, &fis) {
                self.model_error(ModelError::Bus { port: i, fault });
            }
            p.tfd = (error as u32) << 8 | (status & 0x77) as u32 | (p.tfd & 0x88);
            p.sact &= !finished;
            p.is |= if status & STS_ERR != 0 {
                IS_TFES
            } else {
                IS_SDBS
            };
        }
        self.s.borrow_mut().log.push(log);
    }
}
