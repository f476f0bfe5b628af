//! Host physical-memory arena (feature `arena`): fake physical memory for tests.

use crate::{PhysAddr, PhysMemory, VirtAddr, PAGE_SIZE};
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// A zeroed, page-aligned host buffer standing in for physical memory
/// `[base, base + size)`.
///
/// Every access is bounds-checked; an access outside the arena panics with a message
/// naming the address, which in a test means the code under test followed a bad pointer
/// (a corrupt page-table entry, a wrong descriptor address).
///
/// The arena is `!Sync` (interior mutability through raw pointers without locking): share
/// it between threads behind a mutex.
pub struct Arena {
    ptr: *mut u8,
    base: u64,
    size: usize,
    layout: Layout,
}

// SAFETY: the arena exclusively owns its buffer; moving it to another thread moves that
// ownership. It is not `Sync`, so no two threads access it at once.
unsafe impl Send for Arena {}

impl Arena {
    /// Creates a zeroed arena of `size` bytes at fake physical address `base`.
    ///
    /// # Panics
    /// If `base` or `size` is not page aligned, `size` is zero, the range overflows, or
    /// the host allocation fails. This is test infrastructure; a panic is the report.
    pub fn new(base: PhysAddr, size: usize) -> Self {
        let b = base.as_u64();
        assert!(
            b.is_multiple_of(PAGE_SIZE) && (size as u64).is_multiple_of(PAGE_SIZE) && size > 0,
            "Arena::new: base {b:#x} and size {size:#x} must be non-zero multiples of 4 KiB"
        );
        assert!(
            b.checked_add(size as u64).is_some(),
            "Arena::new: range overflows"
        );
        let layout = match Layout::from_size_align(size, PAGE_SIZE as usize) {
            Ok(l) => l,
            Err(e) => panic!("Arena::new: bad layout for {size:#x} bytes: {e}"),
        };
        // SAFETY: the layout has non-zero size (checked above).
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(
            !ptr.is_null(),
            "Arena::new: host allocation of {size:#x} bytes failed"
        );
        Arena {
            ptr,
            base: b,
            size,
            layout,
        }
    }

    /// First fake physical address of the arena.
    pub fn base(&self) -> PhysAddr {
        PhysAddr::new(self.base)
    }

    /// Size of the arena in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// One past the last fake physical address.
    pub fn end(&self) -> PhysAddr {
        PhysAddr::new(self.base + self.size as u64)
    }

    /// True if `[pa, pa + len)` lies inside the arena.
    pub fn contains(&self, pa: PhysAddr, len: usize) -> bool {
        let a = pa.as_u64();
        a >= self.base
            && (a - self.base)
                .checked_add(len as u64)
                .is_some_and(|e| e <= self.size as u64)
    }

    /// Host address of the start of the arena. Together with [`Arena::base`] this gives
    /// the offset of a direct map (`virt = phys - base + host_ptr`), which lets code that
    /// expects one (e.g. the `x86_64` crate's `OffsetPageTable`) run over the arena.
    pub fn host_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Copies the bytes at `[pa, pa + len)` into a new vector, for assertions.
    pub fn to_vec(&self, pa: PhysAddr, len: usize) -> std::vec::Vec<u8> {
        let mut v = std::vec![0u8; len];
        self.read(pa, &mut v);
        v
    }

    /// Offset of `pa` in the buffer, after checking `[pa, pa+len)` is inside.
    #[inline]
    #[track_caller]
    fn offset(&self, pa: PhysAddr, len: usize) -> usize {
        let a = pa.as_u64();
        let off = a.wrapping_sub(self.base);
        if a < self.base
            || off
                .checked_add(len as u64)
                .is_none_or(|e| e > self.size as u64)
        {
            panic!(
                "physical access outside the arena: [{:#x}, {:#x}) is not inside [{:#x}, {:#x})",
                a,
                a.wrapping_add(len as u64),
                self.base,
                self.base + self.size as u64
            );
        }
        off as usize
    }
}

impl core::fmt::Debug for Arena {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Arena([{:#x}, {:#x}) at host {:p})",
            self.base,
            self.base + self.size as u64,
            self.ptr
        )
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with exactly this layout and is freed once.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

impl PhysMemory for Arena {
    #[track_caller]
    fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
        let off = self.offset(pa, buf.len());
        // SAFETY: `offset` checked `[off, off + len)` is inside the live buffer; `buf` is a
        // distinct Rust allocation (a `&mut` cannot alias the arena's raw buffer, which is
        // never handed out as a reference).
        unsafe { core::ptr::copy_nonoverlapping(self.ptr.add(off), buf.as_mut_ptr(), buf.len()) }
    }

    #[track_caller]
    fn write(&self, pa: PhysAddr, data: &[u8]) {
        let off = self.offset(pa, data.len());
        // SAFETY: bounds checked by `offset`; `data` does not overlap the buffer, as above.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len()) }
    }

    #[track_caller]
    fn copy(&self, src: PhysAddr, dst: PhysAddr, len: usize) {
        let (s, d) = (self.offset(src, len), self.offset(dst, len));
        // SAFETY: both ranges bounds-checked by `offset`; `ptr::copy` handles overlap.
        unsafe { core::ptr::copy(self.ptr.add(s), self.ptr.add(d), len) }
    }

    #[track_caller]
    fn fill(&self, pa: PhysAddr, byte: u8, len: usize) {
        let off = self.offset(pa, len);
        // SAFETY: bounds checked by `offset`.
        unsafe { core::ptr::write_bytes(self.ptr.add(off), byte, len) }
    }

    #[inline]
    #[track_caller]
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        let off = self.offset(pa, 8);
        // SAFETY: bounds checked by `offset`; unaligned reads are allowed.
        let v = unsafe { self.ptr.add(off).cast::<u64>().read_unaligned() };
        u64::from_le(v)
    }

    #[inline]
    #[track_caller]
    fn write_u64(&self, pa: PhysAddr, v: u64) {
        let off = self.offset(pa, 8);
        // SAFETY: bounds checked by `offset`; unaligned writes are allowed.
        unsafe { self.ptr.add(off).cast::<u64>().write_unaligned(v.to_le()) }
    }

    #[inline]
    #[track_caller]
    fn read_u32(&self, pa: PhysAddr) -> u32 {
        let off = self.offset(pa, 4);
        // SAFETY: bounds checked by `offset`; unaligned reads are allowed.
        let v = unsafe { self.ptr.add(off).cast::<u32>().read_unaligned() };
        u32::from_le(v)
    }

    #[inline]
    #[track_caller]
    fn write_u32(&self, pa: PhysAddr, v: u32) {
        let off = self.offset(pa, 4);
        // SAFETY: bounds checked by `offset`; unaligned writes are allowed.
        unsafe { self.ptr.add(off).cast::<u32>().write_unaligned(v.to_le()) }
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> Option<VirtAddr> {
        if !self.contains(pa, 1) {
            return None;
        }
        let host = self.ptr as u64 + (pa.as_u64() - self.base);
        VirtAddr::try_new(host).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_round_trip_and_zeroed() {
        let a = Arena::new(PhysAddr::new(0x10_0000), 0x4000);
        assert_eq!(a.read_u64(PhysAddr::new(0x10_1000)), 0);
        a.write_u64(PhysAddr::new(0x10_1000), 0xdead_beef_cafe_f00d);
        assert_eq!(a.read_u64(PhysAddr::new(0x10_1000)), 0xdead_beef_cafe_f00d);
        // Little-endian byte layout, as hardware would see it.
        assert_eq!(a.to_vec(PhysAddr::new(0x10_1000), 2), [0x0d, 0xf0]);
        a.write(PhysAddr::new(0x10_3ffc), &[1, 2, 3, 4]);
        assert_eq!(a.read_u32(PhysAddr::new(0x10_3ffc)), 0x0403_0201);
        a.fill(PhysAddr::new(0x10_2000), 0xaa, 0x1000);
        assert_eq!(a.read_u64(PhysAddr::new(0x10_2ff8)), 0xaaaa_aaaa_aaaa_aaaa);
        assert_eq!(a.read_u64(PhysAddr::new(0x10_3000)), 0);
        assert!(a.contains(PhysAddr::new(0x10_3fff), 1));
        assert!(!a.contains(PhysAddr::new(0x10_3fff), 2));
        assert!(!a.contains(PhysAddr::new(0xf_ffff), 1));
    }

    #[test]
    fn phys_to_virt_points_at_the_same_bytes() {
        let a = Arena::new(PhysAddr::new(0x20_0000), 0x2000);
        a.write_u64(PhysAddr::new(0x20_1008), 42);
        let v = a.phys_to_virt(PhysAddr::new(0x20_1008)).unwrap();
        assert_eq!(v.as_u64() % 8, 0);
        assert_eq!(v.as_u64() - a.host_ptr() as u64, 0x1008);
        assert!(a.phys_to_virt(PhysAddr::new(0x20_2000)).is_none());
    }

    #[test]
    #[should_panic(expected = "physical access outside the arena")]
    fn access_past_end_panics_with_message() {
        let a = Arena::new(PhysAddr::new(0x10_0000), 0x1000);
        let _ = a.read_u64(PhysAddr::new(0x10_0ffc));
    }

    #[test]
    #[should_panic(expected = "physical access outside the arena")]
    fn access_below_base_panics() {
        let a = Arena::new(PhysAddr::new(0x10_0000), 0x1000);
        a.write_u32(PhysAddr::new(0xf_fffc), 1);
    }

    #[test]
    fn copy_overlapping_matches_memmove() {
        let a = Arena::new(PhysAddr::new(0x10_0000), 8192);
        let init: std::vec::Vec<u8> = (0..8192).map(|i| (i * 13) as u8).collect();
        for (src, dst, len) in [
            (0usize, 1000usize, 5000usize),
            (1000, 0, 5000),
            (100, 6000, 2000),
        ] {
            a.write(a.base(), &init);
            let mut want = init.clone();
            want.copy_within(src..src + len, dst);
            a.copy(a.base() + src as u64, a.base() + dst as u64, len);
            assert_eq!(a.to_vec(a.base(), 8192), want);
        }
    }
}
