//! [`NvmeDisk`]: namespace 1 as the block layer's [`BlockDevice`] (Linux's
//! `nvme_queue_rq` / `nvme_complete_rq` seen from the block layer), one request at a
//! time or several in flight.

use super::*;

/// Namespace 1 as a block device. Up to [`Controller::queue_depth`] requests may be
/// in flight ([`BlockDevice::start`]); dropped with some still in flight (a caller
/// that broke the contract), it waits for them and discards their results, so the
/// controller does not reach their memory afterwards.
pub struct NvmeDisk<'a, R: RegisterAccess, D: Delay> {
    pub(crate) ctrl: &'a mut Controller<R, D>,
}

impl<R: RegisterAccess, D: Delay> NvmeDisk<'_, R, D> {
    fn ns(&self) -> Namespace {
        match self.ctrl.ns {
            Some(ns) => ns,
            // `Controller::disk` only hands out a usable namespace.
            None => unreachable!("NvmeDisk without a namespace"),
        }
    }

    fn block_error(&self, lba: u64, e: NvmeError) -> BlockError {
        match e {
            NvmeError::QueueFull { depth } => BlockError::QueueFull { depth },
            NvmeError::NothingInFlight => BlockError::NothingInFlight,
            e => BlockError::Device {
                disk: self.ctrl.name.clone(),
                lba,
                detail: alloc::format!("{e}"),
            },
        }
    }
}

impl<R: RegisterAccess, D: Delay> BlockDevice for NvmeDisk<'_, R, D> {
    fn name(&self) -> &str {
        &self.ctrl.name
    }

    fn sector_size(&self) -> usize {
        self.ns().sector_size
    }

    fn capacity(&self) -> u64 {
        self.ns().sectors
    }

    fn limits(&self) -> QueueLimits {
        match self.ctrl.limits() {
            Some(l) => l,
            None => unreachable!("NvmeDisk without a namespace"),
        }
    }

    fn submit(&mut self, op: Op, req: Request) -> Result<SgTable, BlockError> {
        let r = match op {
            Op::Read => self.ctrl.read(req.lba, &req.sg),
            Op::Write => self.ctrl.write(req.lba, &req.sg),
        };
        r.map_err(|e| self.block_error(req.lba, e))?;
        Ok(req.sg)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.ctrl.flush().map_err(|e| self.block_error(0, e))
    }

    fn queue_depth(&self) -> usize {
        self.ctrl.queue_depth()
    }

    fn start(&mut self, op: Op, req: Request) -> Result<Tag, BlockError> {
        let lba = req.lba;
        self.ctrl
            .start_rw(lba, req.sg, op == Op::Write)
            .map(|cid| Tag(cid as u32))
            .map_err(|e| match e {
                // Short of bounce slots, IOVA space or pages that requests in
                // flight hold: retry after a completion.
                NvmeError::Dma(d) if d.is_resource_shortage() => BlockError::Busy {
                    disk: self.ctrl.name.clone(),
                    lba,
                    detail: alloc::format!("{d}"),
                },
                e => self.block_error(lba, e),
            })
    }

    fn complete(&mut self) -> Result<(Tag, Result<SgTable, BlockError>), BlockError> {
        let c = self
            .ctrl
            .complete_next()
            .map_err(|e| self.block_error(0, e))?;
        let lba = c.lba;
        Ok((
            Tag(c.tag as u32),
            c.result.map_err(|e| self.block_error(lba, e)),
        ))
    }
}

impl<R: RegisterAccess, D: Delay> Drop for NvmeDisk<'_, R, D> {
    fn drop(&mut self) {
        let n = self.ctrl.queued();
        if n == 0 {
            return;
        }
        log::warn!(
            "{}: {n} started request(s) never completed by the caller; draining",
            self.ctrl.name
        );
        while self.ctrl.complete_next().is_ok() {}
    }
}
