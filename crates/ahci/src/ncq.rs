//! Native Command Queuing: several READ/WRITE FPDMA QUEUED in flight on one port
//! (libahci's `ahci_qc_issue`: PxSACT before PxCI; completion when the device's Set
//! Device Bits FIS clears PxSACT bits, as `ahci_handle_port_interrupt` reads them),
//! and what happens when one of them fails or never ends.
//!
//! * One command slot and one command table (from the port's [`DmaPool`]) per tag;
//!   tag = slot, as Linux and QEMU use them. The data stays mapped from `start` until
//!   the tag ends.
//! * A tag has ended when its PxSACT bit is clear. Its mapping is undone then (for
//!   swiotlb, that copies a read back), its table freed, and the result queued for
//!   [`Hba::complete`], which hands results out one at a time.
//! * Errors (PxIS.TFES or another fatal bit, or PxTFD.ERR) while tags are in flight:
//!   which tag failed is not known without READ LOG EXT page 10h, and QEMU 7.2 has no
//!   READ LOG EXT (its IDENTIFY does not set the General Purpose Logging bit, word 84
//!   bit 5; its command table has no 0x2F). So the port is recovered (stop, COMRESET:
//!   QEMU cancels every queued request, a real device aborts them) and every tag
//!   still outstanding is **re-issued, one at a time, as a non-queued READ/WRITE DMA
//!   EXT** into the same mapping: the one that fails again ends with that command's
//!   own error (status, error register, LBA), the others end normally. Nothing is
//!   lost, nothing is unmapped before the COMRESET.
//! * Timeouts: a tag outstanding for longer than the command timeout (time counted
//!   while the driver waits on this port) recovers the port the same way, and every
//!   tag still outstanding then ends with [`AhciError::Timeout`] (no retry: a device
//!   that hangs would hang again).
//! * A recovery that fails leaves the port out of service; the HBA might still reach
//!   the outstanding buffers, so their mappings are leaked, not undone, and the
//!   requests end with [`AhciError::PortFailed`].
//! * A non-queued command (the synchronous read/write, FLUSH, IDENTIFY) first waits
//!   for every tag to end (ATA forbids mixing them); the results wait for `complete`.

use super::*;
use alloc::collections::VecDeque;
use block::Tag;
use dma::SgMapping;

/// One tag in flight.
pub(crate) struct InFlight {
    write: bool,
    lba: u64,
    sectors: u64,
    map: SgMapping,
    /// The command table; the HBA reads it until the tag ends or the port resets.
    table: DmaPoolBlock,
    /// [`Queue::clock_us`] at issue.
    started_us: u64,
}

/// A port's NCQ state.
#[derive(Default)]
pub(crate) struct Queue {
    /// Tags usable (1: no NCQ, `start` refused).
    pub(crate) depth: usize,
    /// By tag.
    slots: Vec<Option<InFlight>>,
    /// Ended, waiting for `complete`.
    done: VecDeque<Ended>,
    /// µs spent waiting on this port's queue.
    clock_us: u64,
    /// PxIS bits seen and not yet acted on.
    is: u32,
}

impl Queue {
    pub(crate) fn new(depth: usize) -> Queue {
        Queue {
            depth,
            slots: (0..depth).map(|_| None).collect(),
            ..Queue::default()
        }
    }

    fn active(&self) -> u32 {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .fold(0, |m, (t, _)| m | 1 << t)
    }

    /// The lowest tag that is neither at the HBA nor ended with its completion
    /// still waiting for `complete`: a tag is the caller's name for its request
    /// until `complete` returns it, so it is not handed out again before.
    fn free_tag(&self) -> Option<usize> {
        let unreported = self.done.iter().fold(0u64, |m, e| m | 1 << e.tag.0);
        (0..self.slots.len()).find(|&t| self.slots[t].is_none() && unreported & 1 << t == 0)
    }
}

/// A started command that ended: its tag, first sector, and its scatter list or
/// why it failed.
#[derive(Debug)]
pub struct Ended {
    /// The tag `start` returned.
    pub tag: Tag,
    /// First sector.
    pub lba: u64,
    /// The scatter list back, or the error.
    pub result: Result<SgTable, AhciError>,
}

fn command_of(write: bool) -> u8 {
    if write {
        regs::ATA_WRITE_FPDMA_QUEUED
    } else {
        regs::ATA_READ_FPDMA_QUEUED
    }
}

impl<R: RegisterAccess, D: Delay> Hba<R, D> {
    /// Commands disk number `disk` can have in flight: min(CAP.NCS + 1, IDENTIFY word
    /// 75 + 1, 32) with CAP.SNCQ and IDENTIFY word 76 bit 8, else 1.
    pub fn queue_depth(&self, disk: usize) -> usize {
        self.ports.get(disk).map_or(1, |p| p.queue.depth.max(1))
    }

    /// Depth for a port whose disk said `id`.
    pub(crate) fn depth_for(&self, id: &Identify) -> usize {
        if self.cap.contains(Cap::SNCQ) && id.ncq {
            self.cap.slots().min(id.queue_depth).min(regs::NCQ_MAX_TAGS)
        } else {
            1
        }
    }

    /// Starts a READ or WRITE FPDMA QUEUED of `sg` at `lba` on disk number `disk`
    /// and returns at once with its tag. `sg`'s memory must stay allocated until
    /// [`complete`](Self::complete) returns the tag.
    pub fn start(&mut self, disk: usize, op: Op, lba: u64, sg: SgTable) -> Result<Tag, AhciError> {
        let write = op == Op::Write;
        let i = self.disk_index(disk)?;
        let mut q = core::mem::take(&mut self.ports[i].queue);
        let r = self.ncq_issue(i, &mut q, write, lba, sg);
        self.ports[i].queue = q;
        r
    }

    /// Waits (bounded by the command timeout) for the next started command on disk
    /// number `disk` to end.
    pub fn complete(&mut self, disk: usize) -> Result<Ended, AhciError> {
        let i = self.disk_index(disk)?;
        let mut q = core::mem::take(&mut self.ports[i].queue);
        let port = &self.ports[i];
        let r = loop {
            if let Some(e) = q.done.pop_front() {
                break Ok(e);
            }
            if q.active() == 0 {
                break Err(AhciError::NothingInFlight(port.index));
            }
            self.ncq_step(port, &mut q);
        };
        self.ports[i].queue = q;
        r
    }

    /// Waits until no tag is in flight on disk `i` (results stay for `complete`).
    pub(crate) fn ncq_drain(&mut self, i: usize) {
        let mut q = core::mem::take(&mut self.ports[i].queue);
        while q.active() != 0 {
            self.ncq_step(&self.ports[i], &mut q);
        }
        self.ports[i].queue = q;
    }

    fn ncq_issue(
        &self,
        i: usize,
        q: &mut Queue,
        write: bool,
        lba: u64,
        sg: SgTable,
    ) -> Result<Tag, AhciError> {
        let port = &self.ports[i];
        let p = port.index;
        if q.depth <= 1 {
            return Err(AhciError::NotQueued(p));
        }
        if port.failed.load(Ordering::Relaxed) {
            return Err(AhciError::PortFailed(p));
        }
        let Some(tag) = q.free_tag() else {
            return Err(AhciError::QueueFull {
                port: p,
                depth: q.depth,
            });
        };
        let sectors = self.check_rw(i, lba, &sg)?;
        let dir = if write {
            DmaDirection::ToDevice
        } else {
            DmaDirection::FromDevice
        };
        let map = self.dev.map_sg(sg, dir)?;
        let fis = regs::fpdma_fis(command_of(write), lba, sectors as u16, tag);
        let table = match self.prepare(port, tag, &fis, write, map.segments()) {
            Ok(t) => t,
            Err(e) => {
                // Nothing was issued: the mapping can go.
                drop(map.unmap());
                return Err(e);
            }
        };
        // Table and header in memory before the HBA may fetch them; PxSACT before
        // PxCI (AHCI 1.3.1 §5.6.4.1, libahci's `ahci_qc_issue`).
        hal::dma_wmb();
        self.wpreg(p, regs::PX_SACT, 1 << tag);
        self.wpreg(p, regs::PX_CI, 1 << tag);
        q.slots[tag] = Some(InFlight {
            write,
            lba,
            sectors,
            map,
            table,
            started_us: q.clock_us,
        });
        Ok(Tag(tag as u32))
    }

    /// One look at the port: ends the tags whose PxSACT bit cleared, acts on an
    /// error or a timeout, and if nothing ended, waits a little (for an interrupt
    /// when it can, else 10 µs).
    fn ncq_step(&self, port: &Port, q: &mut Queue) {
        let p = port.index;
        if self.irq_mode {
            q.is |= self.irq.take(p);
        } else {
            let is = self.preg(p, regs::PX_IS);
            if is != 0 {
                self.wpreg(p, regs::PX_IS, is);
                q.is |= is;
            }
        }
        let sact = self.preg(p, regs::PX_SACT);
        let ended = q.active() & !sact;
        let before = q.done.len();
        for tag in 0..q.slots.len() {
            if ended & (1 << tag) == 0 {
                continue;
            }
            if let Some(f) = q.slots[tag].take() {
                // The tag is no longer active: the HBA is done with table and data.
                drop(f.table);
                q.done.push_back(Ended {
                    tag: Tag(tag as u32),
                    lba: f.lba,
                    result: Ok(f.map.unmap()),
                });
            }
        }
        let counter = if self.irq_mode && q.is != 0 {
            &self.irq.by_irq
        } else {
            &self.irq.by_poll
        };
        counter.fetch_add((q.done.len() - before) as u64, Ordering::Relaxed);
        let tfd = self.preg(p, regs::PX_TFD);
        if q.is & PxIs::FATAL.bits() != 0 || tfd & regs::TFD_ERR != 0 {
            self.ncq_error(port, q, tfd);
            return;
        }
        if q.done.len() > before {
            q.is = 0;
            return;
        }
        let timeout_us = self.cfg.command_timeout_ms as u64 * 1000;
        let oldest = q.slots.iter().flatten().map(|f| f.started_us).min();
        let Some(oldest) = oldest else { return };
        let age = q.clock_us - oldest;
        if age >= timeout_us {
            self.ncq_timeout(port, q);
            return;
        }
        let left = (timeout_us - age).min(u32::MAX as u64) as u32;
        let slept = if self.irq_mode {
            self.delay
                .wait_interrupt(left, &|| self.irq.latched(p) != 0)
        } else {
            None
        };
        q.clock_us += match slept {
            Some(t) => t.max(1) as u64,
            None => {
                self.delay.delay_us(POLL_US);
                POLL_US as u64
            }
        };
    }

    /// Stops the port and COMRESETs it, then takes every outstanding tag out: after
    /// the reset the HBA reaches none of them. `None` if the port did not recover
    /// (the tags are then ended with `PortFailed`, their mappings leaked).
    fn ncq_abort(&self, port: &Port, q: &mut Queue) -> Option<Vec<(usize, InFlight)>> {
        q.is = 0;
        self.recover(port);
        let taken: Vec<(usize, InFlight)> = q
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(t, s)| s.take().map(|f| (t, f)))
            .collect();
        if !port.failed.load(Ordering::Relaxed) {
            return Some(taken);
        }
        for (tag, f) in taken {
            log::error!(
                "{}: tag {tag} (lba {}) ends unfinished; its buffers stay mapped",
                port.name,
                f.lba
            );
            core::mem::forget(f.map);
            core::mem::forget(f.table);
            q.done.push_back(Ended {
                tag: Tag(tag as u32),
                lba: f.lba,
                result: Err(AhciError::PortFailed(port.index)),
            });
        }
        None
    }

    /// An error with tags in flight: recover the port, then run each outstanding
    /// command again on its own (see the module notes).
    fn ncq_error(&self, port: &Port, q: &mut Queue, tfd: u32) {
        let mut sdb = [0u8; 8];
        port.area.read_bytes(FIS_OFF + regs::RX_FIS_SDB, &mut sdb);
        log::warn!(
            "{}: NCQ error (PxIS {:#x}, PxTFD {tfd:#x}, SDB FIS status {:#04x} error {:#04x}) with tags {:#x} outstanding; COMRESET, then each again without NCQ",
            port.name,
            q.is,
            sdb[2],
            sdb[3],
            q.active()
        );
        let Some(taken) = self.ncq_abort(port, q) else {
            return;
        };
        for (tag, f) in taken {
            drop(f.table);
            let command = if f.write {
                regs::ATA_WRITE_DMA_EXT
            } else {
                regs::ATA_READ_DMA_EXT
            };
            let segs = Data::Segments(f.map.segments());
            let r = self.exec(port, command, f.lba, f.sectors as u16, f.write, segs);
            if let Err(e) = &r {
                log::warn!("{}: tag {tag} (lba {}) failed again: {e}", port.name, f.lba);
            }
            if let Err(AhciError::PortFailed(p)) = r {
                // The port is gone and may still reach the buffer: leak the mapping.
                core::mem::forget(f.map);
                q.done.push_back(Ended {
                    tag: Tag(tag as u32),
                    lba: f.lba,
                    result: Err(AhciError::PortFailed(p)),
                });
                continue;
            }
            let sg = f.map.unmap();
            q.done.push_back(Ended {
                tag: Tag(tag as u32),
                lba: f.lba,
                result: r.map(|_| sg),
            });
        }
    }

    /// A tag outlived the command timeout: recover the port and end every tag still
    /// outstanding with a timeout.
    fn ncq_timeout(&self, port: &Port, q: &mut Queue) {
        let ms = self.cfg.command_timeout_ms;
        log::warn!(
            "{}: NCQ tags {:#x} outstanding after {ms} ms; COMRESET, all of them time out",
            port.name,
            q.active()
        );
        let Some(taken) = self.ncq_abort(port, q) else {
            return;
        };
        for (tag, f) in taken {
            drop(f.table);
            drop(f.map.unmap());
            q.done.push_back(Ended {
                tag: Tag(tag as u32),
                lba: f.lba,
                result: Err(AhciError::Timeout {
                    port: port.index,
                    command: command_of(f.write),
                    ms,
                }),
            });
        }
    }

    /// At teardown: a port with tags in flight is reset so the HBA lets go of them
    /// before their memory goes (their results are dropped).
    pub(crate) fn ncq_teardown(&self, port: &mut Port) {
        let mut q = core::mem::take(&mut port.queue);
        if q.active() != 0 {
            if let Some(taken) = self.ncq_abort(port, &mut q) {
                for (_, f) in taken {
                    drop(f.table);
                    drop(f.map.unmap());
                }
            }
        }
    }
}
