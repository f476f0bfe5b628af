//! The DMA mapping API in the running kernel, proven on QEMU's edu device:
//! first-party DMA below and above edu's 28-bit reach, and dma-debug.

use dma::{DebugKind, DmaBackend, DmaBuf, DmaDevice, DmaDirection};

use super::{KTest, TestResult};
use crate::drivers::edu::{self, EduDir};
use crate::shell::dma_cmds::round_trip;
use crate::{dma as kdma, kassert};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "dma::edu_round_trip_low_buffer_is_direct",
        run: low_direct,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "dma::edu_round_trip_above_256m_bounces",
        run: high_bounces,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "dma::edu_rejects_4096_byte_transfer",
        run: edu_limits,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "dma::debug_reports_each_misuse",
        run: debug_checks,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "dma::bench_times_every_backend",
        run: bench_figures,
        profiles: &["default"],
        manual: false,
    },
    KTest {
        name: "harness::deliberate_edu_clamp",
        run: deliberate_clamp,
        profiles: &[],
        manual: true,
    },
];

fn check(dir: EduDir, high: bool) -> TestResult {
    let platform: Option<&'static dyn dma::DmaPlatform> =
        if high { Some(&kdma::HIGH) } else { None };
    for len in [1usize, 64, 4095] {
        let r = edu::with_edu(|e| round_trip(e, dir, len, platform))
            .ok_or("edu not bound")?
            .map_err(|e| alloc::format!("{e}"))?;
        kassert!(
            r.verified == Ok(len),
            "{dir:?} {len} bytes: mismatch at {:?}",
            r.verified
        );
        kassert!(
            r.bus < 1 << 28,
            "bus address {:#x} beyond edu's mask",
            r.bus
        );
        if translated() {
            // Its own VT-d domain: every buffer, high or low, gets an IOVA.
            kassert!(
                r.via.starts_with("IOMMU"),
                "served {} although edu has a domain",
                r.via
            );
        } else if high {
            kassert!(r.cpu_phys >= 1 << 28, "high buffer at {:#x}", r.cpu_phys);
            kassert!(
                r.bus != r.cpu_phys,
                "bus address {:#x} for phys {:#x}",
                r.bus,
                r.cpu_phys
            );
            kassert!(r.via.starts_with("swiotlb"), "served {}", r.via);
        } else {
            kassert!(
                r.bus == r.cpu_phys && r.cpu_phys < 1 << 28,
                "low buffer {:#x} got {:#x}",
                r.cpu_phys,
                r.bus
            );
            kassert!(r.via.starts_with("direct"), "served {}", r.via);
        }
    }
    Ok(())
}

/// Whether edu sits in its own translated IOMMU domain in this boot.
fn translated() -> bool {
    edu::with_edu(|e| crate::iommu::domain_of(e.bdf).is_some()).unwrap_or(false)
}

fn low_direct() -> TestResult {
    check(EduDir::ToDevice, false)?;
    check(EduDir::FromDevice, false)
}

fn high_bounces() -> TestResult {
    let before = kdma::swiotlb().ok_or("no swiotlb")?.stats();
    check(EduDir::ToDevice, true)?;
    check(EduDir::FromDevice, true)?;
    let after = kdma::swiotlb().ok_or("no swiotlb")?.stats();
    kassert!(
        after.used_slots == before.used_slots,
        "bounce slots leaked: {} -> {}",
        before.used_slots,
        after.used_slots
    );
    if !translated() {
        kassert!(
            after.high_water >= 2,
            "the pool was never used (high water {})",
            after.high_water
        );
    }
    let live = edu::with_edu(|e| e.dma.mappings().len()).ok_or("edu gone")?;
    kassert!(live == 0, "{live} mappings left live");
    Ok(())
}

fn edu_limits() -> TestResult {
    // SAFETY: refused before the device is programmed (the length is the test).
    let r = edu::with_edu(|e| unsafe {
        e.transfer_raw(EduDir::ToDevice, hal::DmaAddr::new(0x10_0000), 4096)
    })
    .ok_or("edu not bound")?;
    kassert!(
        r.is_err(),
        "a 4096-byte transfer (which aborts QEMU 7.2) was started"
    );
    // SAFETY: refused before the device is programmed (the length is the test).
    let r = edu::with_edu(|e| unsafe {
        e.transfer_raw(EduDir::ToDevice, hal::DmaAddr::new(0x10_0000), 0)
    })
    .ok_or("edu not bound")?;
    kassert!(
        r.is_err(),
        "an empty transfer (which aborts QEMU 7.2) was started"
    );
    Ok(())
}

fn debug_checks() -> TestResult {
    // A device of its own so its counters start at zero; Direct backend and a
    // 28-bit mask, so a high buffer cannot be fixed by anything.
    let dev = DmaDevice::new("ktest-dma", &kdma::PLATFORM, DmaBackend::Direct);
    dev.set_mask_and_coherent(dma::dma_bit_mask(28))
        .map_err(|e| alloc::format!("{e}"))?;
    let low = DmaBuf::alloc_below(&kdma::PLATFORM, 256, dma::dma_bit_mask(28))
        .map_err(|e| alloc::format!("{e}"))?;
    let high = DmaBuf::alloc(&kdma::HIGH, 256).map_err(|e| alloc::format!("{e}"))?;
    use DmaDirection::*;
    // SAFETY (every map_single below): `low` and `high` are this test's own DmaBufs,
    // alive until it returns, after every mapping of them is gone or reported leaked
    // (the device is a software one; no hardware is pointed at them).
    let a =
        unsafe { dev.map_single(low.phys(), 256, ToDevice) }.map_err(|e| alloc::format!("{e}"))?;
    // Wrong size, then the mapping is gone: a second unmap is a double unmap.
    let _ = dev.unmap_single(a, 128, ToDevice);
    let _ = dev.unmap_single(a, 256, ToDevice);
    // Never mapped.
    let _ = dev.unmap_single(hal::DmaAddr::new(0xdead_0000), 16, ToDevice);
    // Wrong direction at unmap; sync of an unmapped buffer; forbidden sync.
    // SAFETY: as above.
    let b = unsafe { dev.map_single(low.phys(), 256, FromDevice) }
        .map_err(|e| alloc::format!("{e}"))?;
    // The device only writes this buffer; syncing it for the device as if it
    // were to be read by it is the misuse (Linux dma-debug check 18).
    let _ = dev.sync_single_for_device(b, 256, ToDevice);
    let _ = dev.unmap_single(b, 256, ToDevice);
    let _ = dev.sync_single_for_cpu(b, 256, FromDevice);
    // Outside the mask with no swiotlb or IOMMU behind the device.
    kassert!(
        // SAFETY: as above.
        unsafe { dev.map_single(high.phys(), 256, ToDevice) }.is_err(),
        "a mapping above the mask succeeded"
    );
    // A mapping left live when the "driver" goes away.
    // SAFETY: as above.
    let _c = unsafe { dev.map_single(low.phys(), 64, Bidirectional) }
        .map_err(|e| alloc::format!("{e}"))?;
    kassert!(dev.check_leaks() == 1, "leak not found");
    for kind in [
        DebugKind::UnmapSizeMismatch,
        DebugKind::DoubleUnmap,
        DebugKind::UnmapNotMapped,
        DebugKind::UnmapDirectionMismatch,
        DebugKind::SyncWriteOnlyForDevice,
        DebugKind::SyncDirectionMismatch,
        DebugKind::SyncNotMapped,
        DebugKind::MaskViolation,
        DebugKind::Leak,
    ] {
        kassert!(
            dev.debug_count(kind) >= 1,
            "dma-debug did not report {}",
            kind.name()
        );
    }
    kassert!(
        kdma::recent_reports()
            .iter()
            .any(|r| r.contains("ktest-dma")),
        "reports do not name the device"
    );
    Ok(())
}

fn bench_figures() -> TestResult {
    // The benchmark runs every backend and produces figures. How they compare
    // (bounce vs memcpy) is a speed goal: `dmabench` prints it, a test must not
    // assert it (a busy host changes the ratio, not the behaviour).
    let rows = crate::shell::dma_cmds::bench().map_err(|e| alloc::format!("{e}"))?;
    for want in ["memcpy", "direct", "bounce map+unmap (to device)", "iommu"] {
        let row = rows.iter().find(|r| r.name.starts_with(want));
        kassert!(row.is_some(), "no '{want}' row among {} rows", rows.len());
        kassert!(row.is_some_and(|r| r.ns > 0), "'{want}' timed as 0 ns");
    }
    Ok(())
}

/// Programs edu with a raw physical address above 256 MiB, bypassing the DMA
/// API: QEMU clamps it and prints "EDU: clamping DMA", which the runner must
/// catch (boot/src/ktest.rs). Proves the guard can fail.
fn deliberate_clamp() -> TestResult {
    let buf = DmaBuf::alloc(&kdma::HIGH, 64).map_err(|e| alloc::format!("{e}"))?;
    let raw = hal::DmaAddr::new(buf.phys().as_u64()); // what a driver must never do
                                                      // SAFETY: deliberate: the clamp check needs a raw address above the mask;
                                                      // `buf` stays allocated (and unused) while the device writes it.
    edu::with_edu(|e| unsafe { e.transfer_raw(EduDir::FromDevice, raw, 64) })
        .ok_or("edu not bound")?
        .map_err(alloc::string::String::from)?;
    Ok(())
}
