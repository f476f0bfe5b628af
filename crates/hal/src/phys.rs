//! Physical memory access.

use crate::{PhysAddr, VirtAddr};

/// Byte access to physical memory, used by `mm`, `iommu-vtd` and `dma`.
///
/// The kernel implements it through its direct map (phys + offset); host tests use
/// `Arena` (feature `arena`), a byte buffer with fake physical addresses, so page tables,
/// descriptors and bounce buffers are real bytes a test can inspect.
///
/// Methods take `&self`: physical memory is hardware-like and shared (a device may write
/// it too), so implementations use interior mutability. Accesses outside the memory the
/// implementation knows about are a bug in the caller; implementations may panic.
pub trait PhysMemory {
    /// Copies `buf.len()` bytes starting at `pa` into `buf`.
    fn read(&self, pa: PhysAddr, buf: &mut [u8]);

    /// Copies `data` to physical memory starting at `pa`.
    fn write(&self, pa: PhysAddr, data: &[u8]);

    /// Sets `len` bytes starting at `pa` to `byte` (e.g. zeroing a fresh page table).
    fn fill(&self, pa: PhysAddr, byte: u8, len: usize) {
        let chunk = [byte; 64];
        let mut done = 0usize;
        while done < len {
            let n = core::cmp::min(64, len - done);
            self.write(pa + done as u64, &chunk[..n]);
            done += n;
        }
    }

    /// Copies `len` bytes from `src` to `dst` inside physical memory (the
    /// ranges may overlap). The default goes through a small stack buffer;
    /// linear mappings override it with one memmove, which is what a bounce
    /// buffer's cost should be.
    fn copy(&self, src: PhysAddr, dst: PhysAddr, len: usize) {
        let mut buf = [0u8; 256];
        let forward = dst <= src;
        let mut done = 0usize;
        while done < len {
            let n = core::cmp::min(buf.len(), len - done);
            // Copy from the end when dst is above src, so an overlap is safe.
            let off = if forward { done } else { len - done - n };
            self.read(src + off as u64, &mut buf[..n]);
            self.write(dst + off as u64, &buf[..n]);
            done += n;
        }
    }

    /// Reads a little-endian `u32` at `pa`.
    fn read_u32(&self, pa: PhysAddr) -> u32 {
        let mut b = [0u8; 4];
        self.read(pa, &mut b);
        u32::from_le_bytes(b)
    }

    /// Writes a little-endian `u32` at `pa`.
    fn write_u32(&self, pa: PhysAddr, v: u32) {
        self.write(pa, &v.to_le_bytes());
    }

    /// Reads a little-endian `u64` at `pa` (page-table entries, descriptors).
    ///
    /// Implementations should make an 8-byte-aligned access a single load, since the
    /// hardware walks tables with 64-bit accesses.
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        let mut b = [0u8; 8];
        self.read(pa, &mut b);
        u64::from_le_bytes(b)
    }

    /// Writes a little-endian `u64` at `pa`; a single store when 8-byte aligned.
    fn write_u64(&self, pa: PhysAddr, v: u64) {
        self.write(pa, &v.to_le_bytes());
    }

    /// The CPU virtual address at which `pa` can be accessed directly, if there is one
    /// (the kernel's direct map; the arena's host buffer). For fast paths in code that
    /// is allowed to use raw pointers; `None` if `pa` is not backed.
    fn phys_to_virt(&self, pa: PhysAddr) -> Option<VirtAddr>;
}

impl<T: PhysMemory + ?Sized> PhysMemory for &T {
    #[inline]
    fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
        (**self).read(pa, buf)
    }
    #[inline]
    fn write(&self, pa: PhysAddr, data: &[u8]) {
        (**self).write(pa, data)
    }
    #[inline]
    fn fill(&self, pa: PhysAddr, byte: u8, len: usize) {
        (**self).fill(pa, byte, len)
    }

    fn copy(&self, src: PhysAddr, dst: PhysAddr, len: usize) {
        (**self).copy(src, dst, len)
    }
    #[inline]
    fn read_u32(&self, pa: PhysAddr) -> u32 {
        (**self).read_u32(pa)
    }
    #[inline]
    fn write_u32(&self, pa: PhysAddr, v: u32) {
        (**self).write_u32(pa, v)
    }
    #[inline]
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        (**self).read_u64(pa)
    }
    #[inline]
    fn write_u64(&self, pa: PhysAddr, v: u64) {
        (**self).write_u64(pa, v)
    }
    #[inline]
    fn phys_to_virt(&self, pa: PhysAddr) -> Option<VirtAddr> {
        (**self).phys_to_virt(pa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    /// Implements only the required methods, to test the provided ones.
    struct Tiny(RefCell<std::vec::Vec<u8>>);

    impl PhysMemory for Tiny {
        fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
            let o = pa.as_u64() as usize;
            buf.copy_from_slice(&self.0.borrow()[o..o + buf.len()]);
        }
        fn write(&self, pa: PhysAddr, data: &[u8]) {
            let o = pa.as_u64() as usize;
            self.0.borrow_mut()[o..o + data.len()].copy_from_slice(data);
        }
        fn phys_to_virt(&self, _pa: PhysAddr) -> Option<VirtAddr> {
            None
        }
    }

    #[test]
    fn provided_methods_are_little_endian_and_fill_exactly() {
        let m = Tiny(RefCell::new(std::vec![0; 256]));
        m.fill(PhysAddr::new(3), 0xee, 130);
        let b = m.0.borrow().clone();
        assert_eq!(b[2], 0);
        assert!(b[3..133].iter().all(|&x| x == 0xee));
        assert_eq!(b[133], 0);
        m.write_u64(PhysAddr::new(200), 0x0102_0304_0506_0708);
        assert_eq!(m.0.borrow()[200], 0x08);
        assert_eq!(m.read_u64(PhysAddr::new(200)), 0x0102_0304_0506_0708);
        m.write_u32(PhysAddr::new(240), 0xa1b2_c3d4);
        assert_eq!(m.read_u32(PhysAddr::new(240)), 0xa1b2_c3d4);
        // Through a reference too (the blanket impl forwards).
        let r = &m;
        assert_eq!(r.read_u32(PhysAddr::new(241)), 0x00a1_b2c3);
    }

    /// The default `copy` must behave like memmove, in both overlap directions,
    /// also across its internal 256-byte chunks.
    #[test]
    fn default_copy_is_a_memmove() {
        // A 1 KiB image, so the default's 256-byte chunks matter.
        let init: std::vec::Vec<u8> = (0..1024).map(|i| (i * 7) as u8).collect();
        for (src, dst, len) in [
            (0u64, 300u64, 600usize),
            (300, 0, 600),
            (10, 700, 300),
            (0, 0, 1024),
        ] {
            let m = Tiny(RefCell::new(init.clone()));
            let mut want = init.clone();
            want.copy_within(src as usize..src as usize + len, dst as usize);
            m.copy(PhysAddr::new(src), PhysAddr::new(dst), len);
            assert_eq!(*m.0.borrow(), want, "copy {src} -> {dst} len {len}");
        }
    }
}
