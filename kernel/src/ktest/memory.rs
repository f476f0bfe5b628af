//! Memory management in the running kernel: zones, the buddy allocator on real
//! RAM, our mapper on the live page tables, PAT and ioremap.

use hal::{PhysAddr, VirtAddr};
use mm::buddy::{ZoneKind, ZoneLimit};
use mm::paging::PageSize;
use mm::pat::{CacheType, PAT_MSR_VALUE};

use super::{KTest, TestResult};
use crate::mm::direct as physmem;
use crate::{kassert, mm as kmm};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "mm::direct_map_has_no_cached_alias_of_device_memory",
        run: direct_map_device_memory_uncached,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "mm::pat_msr_has_our_layout",
        run: pat_layout,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "mm::zones_match_the_memory_map",
        run: zones_plausible,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "mm::dma32_2mib_block_is_below_4g_and_aligned",
        run: dma32_block,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "mm::dma_zone_allocation_is_below_16m",
        run: dma_zone_block,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "mm::normal_frames_above_4g_hold_data",
        run: normal_above_4g,
        profiles: &["bigmem"],
        manual: false,
    },
    KTest {
        name: "mm::free_misuse_is_reported_not_corrupting",
        run: free_misuse,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "mm::map_write_translate_unmap_4k_and_2m",
        run: map_unmap,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "mm::ioremap_vtd_version_is_1_0_through_uc_mapping",
        run: ioremap_vtd,
        profiles: &["default", "bigmem", "uefi"],
        manual: false,
    },
    KTest {
        name: "mm::ioremap_types_unaligned_and_unmap_on_drop",
        run: ioremap_types,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "mm::ioremap_refuses_ram_and_empty_ranges",
        run: ioremap_refuses,
        profiles: &[],
        manual: false,
    },
];

fn pat_layout() -> TestResult {
    let msr = kmm::pat_msr();
    kassert!(
        msr == PAT_MSR_VALUE,
        "IA32_PAT = {msr:#018x}, expected {PAT_MSR_VALUE:#018x}"
    );
    Ok(())
}

fn zones_plausible() -> TestResult {
    let stats = kmm::zone_stats();
    let zone = |k: ZoneKind| stats.iter().find(|s| s.kind == k);
    let dma = zone(ZoneKind::Dma).ok_or("no DMA zone")?;
    kassert!(
        dma.start.as_u64() >= 1 << 20,
        "DMA zone starts below 1 MiB: {:#x}",
        dma.start.as_u64()
    );
    kassert!(dma.end.as_u64() <= 16 << 20, "DMA zone ends above 16 MiB");
    let dma32 = zone(ZoneKind::Dma32).ok_or("no DMA32 zone")?;
    kassert!(dma32.end.as_u64() <= 4 << 30, "DMA32 zone ends above 4 GiB");
    kassert!(
        dma32.managed_pages > (1 << 30) / 4096,
        "DMA32 has only {} pages",
        dma32.managed_pages
    );
    let profile = crate::cmdline::boot_cmdline()
        .get("profile")
        .unwrap_or("default");
    match (profile, zone(ZoneKind::Normal)) {
        ("bigmem", Some(n)) => kassert!(
            n.managed_pages >= (3u64 << 30) / 4096 && n.start.as_u64() >= 4 << 30,
            "bigmem Normal zone: {} pages from {:#x}",
            n.managed_pages,
            n.start.as_u64()
        ),
        ("bigmem", None) => return Err("bigmem: no Normal zone".into()),
        (_, Some(n)) => {
            return Err(alloc::format!(
                "2 GiB machine has a Normal zone of {} pages",
                n.managed_pages
            ))
        }
        (_, None) => {}
    }
    // The allocator must not hand out what the boot map says is in use.
    let managed: u64 = stats.iter().map(|s| s.managed_pages).sum();
    let usable = crate::mm::memmap::total(crate::mm::memmap::Kind::Usable) / 4096;
    kassert!(
        managed <= usable,
        "{managed} pages managed but only {usable} usable"
    );
    Ok(())
}

/// Writes a pattern over `len` bytes at `pa` through the direct map and reads it back.
fn pattern_check(pa: PhysAddr, len: usize, seed: u8) -> TestResult {
    let va = physmem::to_virt(pa.as_u64()).as_mut_ptr::<u8>();
    // SAFETY: the caller owns these freshly allocated frames.
    let buf = unsafe { core::slice::from_raw_parts_mut(va, len) };
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    for (i, b) in buf.iter().enumerate() {
        kassert!(
            *b == (i as u8).wrapping_mul(31).wrapping_add(seed),
            "byte {i} of {:#x} changed",
            pa.as_u64()
        );
    }
    Ok(())
}

fn dma32_block() -> TestResult {
    let pa = kmm::alloc_frames(9, ZoneLimit::Dma32).map_err(|e| alloc::format!("{e}"))?;
    let a = pa.as_u64();
    let result = (|| {
        kassert!(
            a + (2 << 20) <= 4 << 30,
            "2 MiB DMA32 block at {a:#x} crosses 4 GiB"
        );
        kassert!(
            a % (2 << 20) == 0,
            "2 MiB block at {a:#x} is not 2 MiB aligned"
        );
        pattern_check(pa, 2 << 20, 7)
    })();
    kmm::free_frames(pa, 9).map_err(|e| alloc::format!("{e}"))?;
    result
}

fn dma_zone_block() -> TestResult {
    let pa = kmm::alloc_frames(2, ZoneLimit::Dma).map_err(|e| alloc::format!("{e}"))?;
    let a = pa.as_u64();
    let result = (|| {
        kassert!(
            a + 16384 <= 16 << 20,
            "DMA-zone block at {a:#x} is above 16 MiB"
        );
        kassert!(a >= 1 << 20, "DMA-zone block at {a:#x} is below 1 MiB");
        kassert!(kmm::zone_of(pa) == ZoneKind::Dma, "zone_of disagrees");
        pattern_check(pa, 16384, 3)
    })();
    kmm::free_frames(pa, 2).map_err(|e| alloc::format!("{e}"))?;
    result
}

fn normal_above_4g() -> TestResult {
    // Default allocations prefer the Normal zone: take 16 MiB in 4 MiB blocks.
    let mut blocks = alloc::vec::Vec::new();
    for _ in 0..4 {
        blocks.push(kmm::alloc_frames(10, ZoneLimit::Any).map_err(|e| alloc::format!("{e}"))?);
    }
    let mut result = Ok(());
    for (i, pa) in blocks.iter().enumerate() {
        if pa.as_u64() < 4 << 30 {
            result = Err(alloc::format!(
                "block {i} at {:#x} is not above 4 GiB",
                pa.as_u64()
            ));
            break;
        }
        if let Err(e) = pattern_check(*pa, 4 << 20, i as u8) {
            result = Err(e);
            break;
        }
    }
    for pa in blocks {
        kmm::free_frames(pa, 10).map_err(|e| alloc::format!("{e}"))?;
    }
    result
}

fn free_misuse() -> TestResult {
    let before = kmm::error_counts().ok_or("mm not ready")?;
    let free_before: u64 = kmm::zone_stats().iter().map(|s| s.free_pages).sum();
    let pa = kmm::alloc_frames(1, ZoneLimit::Any).map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        kmm::free_frames(pa, 0).is_err(),
        "free with the wrong order accepted"
    );
    kmm::free_frames(pa, 1).map_err(|e| alloc::format!("{e}"))?;
    kassert!(kmm::free_frames(pa, 1).is_err(), "double free accepted");
    kassert!(
        kmm::free_frames(PhysAddr::new(0x1000), 0).is_err(),
        "free below 1 MiB accepted"
    );
    kassert!(
        kmm::free_frames(pa + 123u64, 0).is_err(),
        "misaligned free accepted"
    );
    let after = kmm::error_counts().ok_or("mm not ready")?;
    kassert!(
        after.free_errors() == before.free_errors() + 4,
        "expected 4 counted misuses, got {}",
        after.free_errors() - before.free_errors()
    );
    let free_after: u64 = kmm::zone_stats().iter().map(|s| s.free_pages).sum();
    kassert!(
        free_after == free_before,
        "free pages {free_before} -> {free_after}"
    );
    Ok(())
}

/// A kernel virtual range no one else uses, for mapping tests.
const TEST_VA: u64 = 0xFFFF_B000_0000_0000;

fn map_unmap() -> TestResult {
    let frame = kmm::alloc_frames(0, ZoneLimit::Any).map_err(|e| alloc::format!("{e}"))?;
    let va = VirtAddr::new(TEST_VA);
    kmm::map_page(va, frame, PageSize::Size4K, true, CacheType::WriteBack)
        .map_err(|e| alloc::format!("map: {e}"))?;
    // SAFETY: `va` was just mapped writable to a frame this test owns.
    unsafe { core::ptr::write_volatile(va.as_mut_ptr::<u64>(), 0x5a5a_1234_dead_beef) };
    let direct = physmem::to_virt(frame.as_u64()).as_ptr::<u64>();
    // SAFETY: the direct-map alias of the same owned frame.
    let seen = unsafe { core::ptr::read_volatile(direct) };
    kassert!(
        seen == 0x5a5a_1234_dead_beef,
        "write through the new mapping not seen in the frame: {seen:#x}"
    );
    let t = kmm::translate(va + 0x10u64).ok_or("no translation")?;
    kassert!(
        t.phys == frame + 0x10u64 && t.size == PageSize::Size4K,
        "translate: {t:?}"
    );
    kassert!(
        kmm::map_page(va, frame, PageSize::Size4K, true, CacheType::WriteBack).is_err(),
        "double map accepted"
    );
    let t = kmm::set_page_flags(va, false, CacheType::WriteThrough)
        .map_err(|e| alloc::format!("{e}"))?;
    kassert!(t.cache == CacheType::WriteBack, "old type {:?}", t.cache);
    let t = kmm::translate(va).ok_or("lost translation")?;
    kassert!(
        t.cache == CacheType::WriteThrough
            && !t
                .flags
                .contains(x86_64::structures::paging::PageTableFlags::WRITABLE),
        "flags not changed: {t:?}"
    );
    let (pa, size) = kmm::unmap_page(va).map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        pa == frame && size == PageSize::Size4K,
        "unmap returned {pa:?} {size:?}"
    );
    kassert!(kmm::translate(va).is_none(), "still mapped after unmap");
    kassert!(
        kmm::unmap_page(va).is_err(),
        "unmap of an unmapped page accepted"
    );
    kmm::free_frames(frame, 0).map_err(|e| alloc::format!("{e}"))?;

    // A 2 MiB page.
    let big = kmm::alloc_frames(9, ZoneLimit::Any).map_err(|e| alloc::format!("{e}"))?;
    let va2 = VirtAddr::new(TEST_VA + (2 << 20));
    kmm::map_page(va2, big, PageSize::Size2M, true, CacheType::WriteBack)
        .map_err(|e| alloc::format!("map 2M: {e}"))?;
    let inner = va2 + 0x1F_F000u64;
    // SAFETY: inside the 2 MiB page just mapped to an owned block.
    unsafe { core::ptr::write_volatile(inner.as_mut_ptr::<u32>(), 0xC0FFEE) };
    let t = kmm::translate(inner).ok_or("no 2M translation")?;
    kassert!(
        t.size == PageSize::Size2M && t.phys == big + 0x1F_F000u64,
        "2M translate: {t:?}"
    );
    // SAFETY: direct-map alias of the same owned block.
    let seen = unsafe {
        core::ptr::read_volatile(physmem::to_virt(big.as_u64() + 0x1F_F000).as_ptr::<u32>())
    };
    kassert!(seen == 0xC0FFEE, "2M write not seen: {seen:#x}");
    kassert!(
        kmm::map_page(
            va2 + 0x1000u64,
            big,
            PageSize::Size4K,
            true,
            CacheType::WriteBack
        )
        .is_err(),
        "4K map inside a 2M page accepted"
    );
    kmm::unmap_page(va2).map_err(|e| alloc::format!("{e}"))?;
    kmm::free_frames(big, 9).map_err(|e| alloc::format!("{e}"))?;
    Ok(())
}

/// QEMU's VT-d unit sits at 0xfed90000 (hw-facts §4.2); VER_REG (offset 0)
/// reads 0x10: major 1, minor 0.
fn ioremap_vtd() -> TestResult {
    let regs = kmm::ioremap(0xfed9_0000, 0x1000).map_err(|e| alloc::format!("{e}"))?;
    let ver = regs.read32(0);
    kassert!(ver == 0x10, "VT-d VER_REG = {ver:#x}, expected 0x10 (1.0)");
    let t = kmm::translate(regs.virt()).ok_or("ioremap region not mapped")?;
    kassert!(
        t.cache == CacheType::Uncached,
        "live PTE cache type {:?}",
        t.cache
    );
    // The PTE's own bits: PCD and PWT set (PAT index 3 = UC), PAT bit clear.
    kassert!(
        t.raw & (1 << 4) != 0 && t.raw & (1 << 3) != 0 && t.raw & (1 << 7) == 0,
        "PTE {:#x} does not select PAT entry 3",
        t.raw
    );
    kassert!(
        t.phys.as_u64() == 0xfed9_0000,
        "maps {:#x}",
        t.phys.as_u64()
    );
    Ok(())
}

fn ioremap_types() -> TestResult {
    let before = kmm::ioremap_pages();
    // An unaligned request spanning two pages (the HPET block is at 0xfed00000).
    let r = kmm::ioremap_wc(0xfed0_0ff0, 0x20).map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        r.virt().as_u64() % 4096 == 0xff0,
        "offset in page lost: {:#x}",
        r.virt().as_u64()
    );
    let page = r.virt().align_down(4096u64);
    for p in [page, page + 4096u64] {
        let t = kmm::translate(p).ok_or("page of the range not mapped")?;
        kassert!(t.cache == CacheType::WriteCombining, "type {:?}", t.cache);
    }
    kassert!(kmm::ioremap_pages() == before + 2, "two pages expected");
    // Out-of-range accesses are refused, not performed.
    kassert!(
        r.read32(0x20) == u32::MAX,
        "read past the end returned data"
    );
    drop(r);
    kassert!(kmm::translate(page).is_none(), "still mapped after drop");
    kassert!(kmm::ioremap_pages() == before, "virtual range not freed");
    let c = kmm::ioremap_cache(0xfed9_0000, 8).map_err(|e| alloc::format!("{e}"))?;
    let t = kmm::translate(c.virt()).ok_or("not mapped")?;
    kassert!(
        t.cache == CacheType::WriteBack,
        "ioremap_cache type {:?}",
        t.cache
    );
    Ok(())
}

fn ioremap_refuses() -> TestResult {
    kassert!(
        matches!(kmm::ioremap(0x200_0000, 4096), Err(kmm::MmError::IsRam(_))),
        "ioremap of RAM accepted"
    );
    kassert!(
        kmm::ioremap(0xfed9_0000, 0).is_err(),
        "empty range accepted"
    );
    kassert!(
        kmm::ioremap(u64::MAX - 10, 100).is_err(),
        "overflowing range accepted"
    );
    Ok(())
}

/// The direct map's view of device memory (the local APIC page, the ECAM window, the
/// IO-APIC) is uncached, like the `ioremap` of it; RAM stays write-back.
fn direct_map_device_memory_uncached() -> TestResult {
    use mm::pat::CacheType;
    let cache_at = |pa: u64| {
        crate::mm::translate(crate::mm::direct::to_virt(pa))
            .map(|t| t.cache)
            .ok_or(alloc::format!("{pa:#x} not in the direct map"))
    };
    for (what, pa) in [("local APIC", 0xfee0_0000u64), ("IO-APIC", 0xfec0_0000)] {
        let c = cache_at(pa)?;
        kassert!(
            c == CacheType::Uncached,
            "{what} at {pa:#x} is {c:?} in the direct map"
        );
    }
    if let Some(w) = crate::acpi::get().and_then(|p| p.ecam.first().copied()) {
        let c = cache_at(w.base)?;
        kassert!(c == CacheType::Uncached, "ECAM at {:#x} is {c:?}", w.base);
    }
    let ram =
        crate::mm::alloc_frames(0, mm::buddy::ZoneLimit::Any).map_err(|e| alloc::format!("{e}"))?;
    let c = cache_at(ram.as_u64());
    let _ = crate::mm::free_frames(ram, 0);
    kassert!(
        c? == CacheType::WriteBack,
        "RAM is not write-back in the direct map"
    );
    Ok(())
}
