//! Ownership hand-overs of a live mapping (Linux `dma_sync_single_for_{cpu,device}`,
//! swiotlb's `swiotlb_sync_single_for_*`): the cache hook and, when bouncing, the copy
//! of the synced range, by the rules in [`crate::mapping`]'s table.

use crate::{DmaDevice, DmaDirection, DmaError};
use hal::DmaAddr;

impl DmaDevice {
    /// Shared body of both syncs. Finds the mapping in the device's table (no scan, no
    /// registry); dma-debug reports follow Linux's `check_sync`; the sync is done with
    /// the caller's direction as Linux does.
    pub(crate) fn sync(
        &self,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
        for_cpu: bool,
    ) -> Result<(), DmaError> {
        let found = self.maps.lock().containing(addr, dir);
        let Some(m) = found else {
            self.debug.sync_not_mapped(&self.name, addr, len, dir);
            return Err(DmaError::NotMapped {
                device: self.name.clone(),
                addr,
                len,
            });
        };
        let off = (addr.as_u64() - m.dma.as_u64()) as usize;
        let o = m.info();
        if off.checked_add(len).is_none_or(|end| end > m.len) {
            self.debug.sync_out_of_range(&self.name, &o, addr, len, dir);
            return Err(DmaError::SyncOutOfRange {
                device: self.name.clone(),
                addr,
                len,
                map_len: m.len,
            });
        }
        self.debug.synced(&self.name, &o, addr, len, dir, for_cpu);
        if for_cpu {
            if !m.coherent {
                self.platform
                    .cache_sync_for_cpu(m.device_phys(off), len, dir);
            }
            if let Some((pool, slots)) = m.bounce_slots() {
                // sync_for_cpu: `len` bytes at offset `off` of the mapping.
                // exercise(swiotlb): begin
                if dir.device_writes() {
                    pool.bounce(
                        m.phys + off as u64,
                        slots.tlb + off as u64,
                        len,
                        DmaDirection::FromDevice,
                    );
                }
                // exercise(swiotlb): stub
                // let _ = (pool, slots, off);
                // todo!("exercise swiotlb: sync a bounced range for the CPU")
                // exercise(swiotlb): end
            }
        } else {
            if let Some((pool, slots)) = m.bounce_slots() {
                // sync_for_device: `len` bytes at offset `off` of the mapping.
                // exercise(swiotlb): begin
                if dir.device_reads() {
                    pool.bounce(
                        m.phys + off as u64,
                        slots.tlb + off as u64,
                        len,
                        DmaDirection::ToDevice,
                    );
                }
                // exercise(swiotlb): stub
                // let _ = (pool, slots, off);
                // todo!("exercise swiotlb: sync a bounced range for the device")
                // exercise(swiotlb): end
            }
            if !m.coherent {
                self.platform
                    .cache_sync_for_device(m.device_phys(off), len, dir);
            }
        }
        Ok(())
    }
}
