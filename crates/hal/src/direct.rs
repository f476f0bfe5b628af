//! [`DirectMap`]: the kernel's [`PhysMemory`], through a linear mapping of all RAM.

use crate::{PhysAddr, PhysMemory, VirtAddr};

/// Physical memory reached through a direct map: physical address `pa` is mapped at
/// virtual address `offset + pa` (the bootloader's "map physical memory" option, Linux's
/// `__va`). Accesses beyond `limit` panic: they would be a kernel bug, and touching an
/// unmapped address would fault anyway, with a less helpful message.
#[derive(Debug, Clone, Copy)]
pub struct DirectMap {
    offset: u64,
    limit: u64,
}

impl DirectMap {
    /// A direct map at `offset` covering physical addresses `[0, limit)`.
    ///
    /// # Safety
    /// Every physical address below `limit` must be mapped, readable and writable at
    /// `offset + pa` for as long as the `DirectMap` (or a copy) is used, and memory the
    /// kernel owns as Rust objects must not be written through it while those objects
    /// are borrowed (the usual rule for raw physical access: use it for page tables, DMA
    /// buffers and descriptors, which are never Rust references).
    pub const unsafe fn new(offset: VirtAddr, limit: u64) -> Self {
        DirectMap {
            offset: offset.as_u64(),
            limit,
        }
    }

    /// End of the mapped physical range (exclusive).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The virtual address of `pa` (no check against `limit`).
    pub fn virt(&self, pa: PhysAddr) -> VirtAddr {
        VirtAddr::new_truncate(self.offset.wrapping_add(pa.as_u64()))
    }

    /// The physical address of a direct-map virtual address, if it is inside the map.
    pub fn phys(&self, va: VirtAddr) -> Option<PhysAddr> {
        let pa = va.as_u64().checked_sub(self.offset)?;
        (pa < self.limit).then(|| PhysAddr::new_truncate(pa))
    }

    #[inline]
    #[track_caller]
    fn ptr(&self, pa: PhysAddr, len: usize) -> *mut u8 {
        let a = pa.as_u64();
        let ok = a.checked_add(len as u64).is_some_and(|e| e <= self.limit);
        assert!(
            ok,
            "physical access [{a:#x}, +{len:#x}) beyond the direct map ({:#x})",
            self.limit
        );
        self.offset.wrapping_add(a) as *mut u8
    }
}

impl PhysMemory for DirectMap {
    #[track_caller]
    fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
        let p = self.ptr(pa, buf.len());
        // SAFETY: `new`'s contract: `[pa, pa + len)` is mapped at `p` (checked against
        // `limit`) and is not a live Rust object; `buf` is a distinct Rust buffer.
        unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) }
    }

    #[track_caller]
    fn write(&self, pa: PhysAddr, data: &[u8]) {
        let p = self.ptr(pa, data.len());
        // SAFETY: as for `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) }
    }

    #[track_caller]
    fn copy(&self, src: PhysAddr, dst: PhysAddr, len: usize) {
        let (s, d) = (self.ptr(src, len), self.ptr(dst, len));
        let disjoint = src.as_u64().abs_diff(dst.as_u64()) >= len as u64;
        if disjoint {
            // SAFETY: both ranges are inside the direct map (checked by `ptr`)
            // and do not overlap. memcpy rather than memmove: on the kernel
            // target memmove is a much slower byte loop.
            unsafe { core::ptr::copy_nonoverlapping(s, d, len) }
        } else {
            // SAFETY: as above; `ptr::copy` is a memmove, for overlapping ranges.
            unsafe { core::ptr::copy(s, d, len) }
        }
    }

    #[track_caller]
    fn fill(&self, pa: PhysAddr, byte: u8, len: usize) {
        let p = self.ptr(pa, len);
        // SAFETY: as for `read`.
        unsafe { core::ptr::write_bytes(p, byte, len) }
    }

    /// Volatile: page-table entries are also written by the CPU (accessed/dirty bits) and
    /// descriptors by devices, so the compiler must not cache or merge these accesses.
    #[inline]
    #[track_caller]
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        let p = self.ptr(pa, 8);
        // Volatile accesses must be aligned; unaligned addresses take the byte path.
        if pa.as_u64().is_multiple_of(8) {
            // SAFETY: as for `read`, and the address is 8-byte aligned.
            unsafe { core::ptr::read_volatile(p.cast::<u64>()) }
        } else {
            let mut b = [0u8; 8];
            self.read(pa, &mut b);
            u64::from_le_bytes(b)
        }
    }

    #[inline]
    #[track_caller]
    fn write_u64(&self, pa: PhysAddr, v: u64) {
        let p = self.ptr(pa, 8);
        if pa.as_u64().is_multiple_of(8) {
            // SAFETY: as for `read`, and the address is 8-byte aligned.
            unsafe { core::ptr::write_volatile(p.cast::<u64>(), v) }
        } else {
            self.write(pa, &v.to_le_bytes());
        }
    }

    #[inline]
    #[track_caller]
    fn read_u32(&self, pa: PhysAddr) -> u32 {
        let p = self.ptr(pa, 4);
        if pa.as_u64().is_multiple_of(4) {
            // SAFETY: as for `read`, and the address is 4-byte aligned.
            unsafe { core::ptr::read_volatile(p.cast::<u32>()) }
        } else {
            let mut b = [0u8; 4];
            self.read(pa, &mut b);
            u32::from_le_bytes(b)
        }
    }

    #[inline]
    #[track_caller]
    fn write_u32(&self, pa: PhysAddr, v: u32) {
        let p = self.ptr(pa, 4);
        if pa.as_u64().is_multiple_of(4) {
            // SAFETY: as for `read`, and the address is 4-byte aligned.
            unsafe { core::ptr::write_volatile(p.cast::<u32>(), v) }
        } else {
            self.write(pa, &v.to_le_bytes());
        }
    }

    #[inline]
    fn phys_to_virt(&self, pa: PhysAddr) -> Option<VirtAddr> {
        (pa.as_u64() < self.limit).then(|| self.virt(pa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_land_at_offset_plus_phys() {
        // A host buffer standing in for physical [0x1000, 0x1000 + 64).
        let mut buf = [0u64; 8];
        let host = buf.as_mut_ptr() as u64;
        let fake_base = 0x1000u64;
        // SAFETY: physical [0x1000, 0x1040) maps onto `buf`, which outlives `dm` and is
        // not accessed through references while `dm` is used.
        let dm = unsafe { DirectMap::new(VirtAddr::new(host - fake_base), fake_base + 64) };
        dm.write_u64(PhysAddr::new(0x1008), 0x1122_3344_5566_7788);
        dm.write_u32(PhysAddr::new(0x1013), 0xaabb_ccdd); // unaligned path
        dm.fill(PhysAddr::new(0x1020), 0x5a, 8);
        assert_eq!(dm.read_u64(PhysAddr::new(0x1008)), 0x1122_3344_5566_7788);
        assert_eq!(dm.read_u32(PhysAddr::new(0x1013)), 0xaabb_ccdd);
        assert_eq!(dm.read_u64(PhysAddr::new(0x1011)), 0x0000_aabb_ccdd_0000);
        assert_eq!(
            dm.phys_to_virt(PhysAddr::new(0x1008)).map(|v| v.as_u64()),
            Some(host + 8)
        );
        assert_eq!(
            dm.phys(VirtAddr::new(host + 8)),
            Some(PhysAddr::new(0x1008))
        );
        assert_eq!(dm.phys_to_virt(PhysAddr::new(0x1040)), None);
        let _ = dm;
        assert_eq!(buf[1], 0x1122_3344_5566_7788);
        assert_eq!(buf[4], 0x5a5a_5a5a_5a5a_5a5a);
    }

    #[test]
    #[should_panic(expected = "beyond the direct map")]
    fn access_beyond_limit_panics() {
        let mut buf = [0u64; 1];
        // SAFETY: physical [0, 8) maps onto `buf`.
        let dm = unsafe { DirectMap::new(VirtAddr::from_ptr(buf.as_mut_ptr()), 8) };
        dm.read_u64(PhysAddr::new(4));
    }
}
