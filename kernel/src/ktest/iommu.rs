//! VT-d in the running kernel (the default profile translates; iommu-lazy,
//! iommu-pt, iommu-4level, iommu-reginval, two-edu vary it): translation
//! state, where edu's IOVAs land, a blocked DMA, isolation.

use super::{KTest, TestResult};
use crate::drivers::edu;
use crate::iommu::{self, Mode};
use crate::shell::dma_cmds::unmapped_write;
use crate::{dma as kdma, kassert};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "iommu::unit_up_in_the_requested_mode",
        run: unit_state,
        profiles: &[
            "default",
            "uefi",
            "pcie",
            "iommu-lazy",
            "iommu-pt",
            "iommu-4level",
            "iommu-reginval",
        ],
        manual: false,
    },
    KTest {
        name: "iommu::edu_iova_lands_in_its_buffer",
        run: iova_lands,
        profiles: &["default", "iommu-lazy", "iommu-4level", "iommu-reginval"],
        manual: false,
    },
    KTest {
        name: "iommu::unmapped_iova_is_blocked_with_a_decoded_fault",
        run: blocked,
        profiles: &["default", "iommu-4level", "iommu-reginval"],
        manual: false,
    },
    KTest {
        name: "iommu::sg_list_is_one_contiguous_iova_range_for_edu",
        run: sg_contiguous,
        profiles: &["default", "iommu-lazy", "iommu-4level", "iommu-reginval"],
        manual: false,
    },
    KTest {
        name: "iommu::functions_without_a_driver_are_blocked",
        run: unclaimed_blocked,
        profiles: &["default", "uefi", "iommu-lazy", "iommu-4level"],
        manual: false,
    },
    KTest {
        name: "iommu::iommu_pt_leaves_functions_without_a_driver_in_pass_through",
        run: unclaimed_passthrough,
        profiles: &["iommu-pt"],
        manual: false,
    },
    KTest {
        name: "iommu::a_page_table_allocation_failure_is_out_of_memory_not_out_of_range",
        run: vtd_errors_keep_their_cause,
        profiles: &["default"],
        manual: false,
    },
    KTest {
        name: "iommu::a_dropped_bench_domain_gives_its_id_back",
        run: bench_domain_id_released,
        profiles: &["two-edu"],
        manual: false,
    },
    KTest {
        name: "iommu::two_edus_cannot_reach_each_others_buffers",
        run: isolation,
        profiles: &["two-edu"],
        manual: false,
    },
];

/// Device `owner` maps a buffer; device `other` is pointed at that IOVA and
/// must be blocked (its own domain has nothing there), leaving the buffer as
/// it was; the owner itself still reaches it.
fn cross(owner: usize, other: usize) -> TestResult {
    use crate::drivers::edu::{with_edu_at, EduDir};
    let buf = dma::DmaBuf::alloc_below(&kdma::PLATFORM, 256, dma::dma_bit_mask(28))
        .map_err(|e| alloc::format!("{e}"))?;
    let s = with_edu_at(owner, |e| {
        dma::DmaStream::<dma::FromDevice>::map(&e.dma, buf)
    })
    .ok_or("owner edu missing")?
    .map_err(|e| alloc::format!("{}", e.error))?;
    let iova = s.dma_addr();
    let other_bdf = with_edu_at(other, |e| e.bdf).ok_or("second edu missing")?;
    let before = iommu::fault_count();
    // SAFETY: deliberate: `iova` belongs to the other device's domain; the IOMMU
    // must block it (this test checks that).
    with_edu_at(other, |e| unsafe {
        e.transfer_raw(EduDir::FromDevice, iova, 256)
    })
    .ok_or("second edu missing")?
    .map_err(alloc::string::String::from)?;
    super::wait_until(super::EVENT_BOUND_MS, || {
        iommu::collect_faults();
        iommu::fault_count() > before
    });
    let faults = iommu::fault_count() - before;
    let hist = iommu::fault_history();
    let last = hist.last().cloned().unwrap_or_default();
    let got = s.unmap().to_vec();
    kassert!(
        faults == 1,
        "{faults} faults when edu {other_bdf} wrote to another device's IOVA {iova:#x}"
    );
    let short = alloc::format!(
        "{:02x}:{:02x}.{}",
        other_bdf.bus,
        other_bdf.device,
        other_bdf.function
    );
    kassert!(
        last.contains(&short),
        "fault names the wrong device: {last}"
    );
    kassert!(
        got.iter().all(|&b| b == 0),
        "the other device's write reached the buffer"
    );
    Ok(())
}

fn isolation() -> TestResult {
    let n = (0..4)
        .take_while(|&i| edu::with_edu_at(i, |_| ()).is_some())
        .count();
    kassert!(n == 2, "{n} edu devices bound, expected 2");
    let (a, b) = (
        edu::with_edu_at(0, |e| iommu::domain_of(e.bdf))
            .flatten()
            .ok_or("edu 0 has no domain")?,
        edu::with_edu_at(1, |e| iommu::domain_of(e.bdf))
            .flatten()
            .ok_or("edu 1 has no domain")?,
    );
    kassert!(a.1 != b.1, "both edus share {:?}", a.1);
    cross(0, 1)?;
    cross(1, 0)?;
    // And each still reaches its own memory.
    for i in 0..2 {
        let r = edu::with_edu_at(i, |e| {
            crate::shell::dma_cmds::round_trip(e, edu::EduDir::ToDevice, 512, None)
        })
        .ok_or("edu gone")?
        .map_err(|e| alloc::format!("{e}"))?;
        kassert!(
            r.verified == Ok(512),
            "edu {i} round trip failed: {:?}",
            r.verified
        );
    }
    Ok(())
}

fn unit_state() -> TestResult {
    let io = iommu::get().ok_or("no IOMMU state")?;
    let profile = crate::cmdline::boot_cmdline().get("profile").unwrap_or("");
    let want = if profile == "iommu-pt" {
        Mode::PassThrough
    } else {
        Mode::Translate
    };
    kassert!(io.mode == want, "mode {:?}, expected {want:?}", io.mode);
    kassert!(
        io.strict == (profile != "iommu-lazy"),
        "strict = {}",
        io.strict
    );
    let e = io.units.first().ok_or("no unit")?;
    let (tes, levels) =
        iommu::with_unit(&e.unit, |u| (u.gsts().bits() & (1 << 31) != 0, u.levels()));
    kassert!(tes, "translation not enabled");
    let want_levels = if profile == "iommu-4level" { 4 } else { 3 };
    kassert!(
        levels == want_levels,
        "{levels}-level tables, expected {want_levels}"
    );
    let edu_domain = edu::with_edu(|d| iommu::domain_of(d.bdf)).ok_or("edu not bound")?;
    kassert!(
        edu_domain.is_some() == (want == Mode::Translate),
        "edu domain {edu_domain:?} in {want:?}"
    );
    Ok(())
}

/// Asks the unit's page walk (not our bookkeeping) where a live mapping's
/// IOVA goes, for edu's source id.
fn iova_lands() -> TestResult {
    edu::with_edu(|e| -> TestResult {
        let buf = dma::DmaBuf::alloc(&kdma::HIGH, 4096).map_err(|e| alloc::format!("{e}"))?;
        let phys = buf.phys().as_u64();
        let s = dma::DmaStream::<dma::ToDevice>::map(&e.dma, buf)
            .map_err(|e| alloc::format!("{}", e.error))?;
        let iova = s.dma_addr().as_u64();
        let t = iommu::translate(e.bdf, iova + 0x123);
        drop(s);
        let t = t.map_err(|e| alloc::format!("{e}"))?;
        kassert!(iova < 1 << 28, "IOVA {iova:#x} beyond edu's mask");
        kassert!(
            t.pa.as_u64() == phys + 0x123,
            "IOVA {iova:#x}+0x123 walks to {:#x}, buffer at {phys:#x}",
            t.pa.as_u64()
        );
        kassert!(
            iommu::translate(e.bdf, iova).is_err() || !iommu::get().is_some_and(|i| i.strict),
            "still translated after a strict unmap"
        );
        Ok(())
    })
    .ok_or("edu not bound")?
}

fn blocked() -> TestResult {
    let vector = iommu::fault_vector();
    kassert!(vector != 0, "no fault-event vector");
    let msis = crate::arch::idt::irq_count(vector);
    let b = edu::with_edu(|e| unmapped_write(e, 64))
        .ok_or("edu not bound")?
        .map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        b.faults.len() == 1,
        "{} faults: {:?}",
        b.faults.len(),
        b.faults
    );
    let f = &b.faults[0];
    let bdf = edu::with_edu(|e| e.bdf).ok_or("edu gone")?;
    let short = alloc::format!("{:02x}:{:02x}.{}", bdf.bus, bdf.device, bdf.function);
    kassert!(
        f.contains(&short) && f.contains("write") && f.contains(&alloc::format!("{:#x}", b.iova)),
        "fault {f}"
    );
    kassert!(f.contains("reason 0x5"), "fault reason in {f}");
    kassert!(b.memory_unchanged, "the blocked DMA changed memory");
    // Delivered by the unit's fault-event MSI, not only found by polling.
    kassert!(
        crate::arch::idt::irq_count(vector) > msis,
        "no fault-event MSI arrived on vector {vector:#x}"
    );
    // The next fault must be recorded too (the previous one was cleared).
    let again = edu::with_edu(|e| unmapped_write(e, 16))
        .ok_or("edu gone")?
        .map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        again.faults.len() == 1,
        "second fault not recorded: {:?}",
        again.faults
    );
    Ok(())
}

/// Three scattered pages mapped as one scatter list: edu gets one segment,
/// one IOVA range; each page of it walks to its own page, and edu's own
/// reads across the page joins (QEMU's VT-d doing the translation) see the
/// pages' contents in order.
fn sg_contiguous() -> TestResult {
    use crate::drivers::edu::EduDir;
    use dma::{DmaBuf, DmaDirection, DmaStream, FromDevice, SgEntry, SgTable};
    edu::with_edu(|e| -> TestResult {
        // 64 KiB chunks of the high block: never adjacent, and above edu's reach.
        let mut pages = alloc::vec::Vec::new();
        for i in 0..3u8 {
            let mut b = DmaBuf::alloc(&kdma::HIGH, 4096).map_err(|e| alloc::format!("{e}"))?;
            b.write(0, &[i + 1; 4096]);
            pages.push(b);
        }
        let entries = pages.iter().map(|b| SgEntry {
            phys: b.phys(),
            len: 4096,
        });
        // SAFETY: each entry is a whole owned DmaBuf of `pages`, kept until after unmap.
        let table = unsafe { SgTable::from_entries(entries) };
        let m = e
            .dma
            .map_sg(table, DmaDirection::ToDevice)
            .map_err(|e| alloc::format!("{e}"))?;
        let segs = m.segments().to_vec();
        let (start, len) = m.iova_range().ok_or("no IOVA range behind the segments")?;
        kassert!(segs.len() == 1, "{} segments: {segs:?}", segs.len());
        let seg = segs[0];
        kassert!(
            seg.addr == start && seg.len == 3 * 4096 && len >= 3 * 4096,
            "segment {seg:?} in range {start:#x}+{len:#x}"
        );
        kassert!(start.as_u64() + len <= 1 << 28, "range beyond edu's mask");
        for (i, b) in pages.iter().enumerate() {
            let iova = seg.addr.as_u64() + i as u64 * 4096 + 0x10;
            let t = iommu::translate(e.bdf, iova).map_err(|e| alloc::format!("{e}"))?;
            kassert!(
                t.pa.as_u64() == b.phys().as_u64() + 0x10,
                "IOVA {iova:#x} walks to {:#x}, page {i} at {:#x}",
                t.pa.as_u64(),
                b.phys().as_u64()
            );
        }
        // edu reads 0xf00 bytes across each join, then writes them back out
        // through an ordinary mapping for us to compare.
        for join in 1..3u64 {
            let from = seg.addr.as_u64() + join * 4096 - 0x800;
            // SAFETY: `from` lies inside the live SgMapping `seg` belongs to.
            unsafe { e.transfer_raw(EduDir::ToDevice, hal::DmaAddr::new(from), 0xf00) }
                .map_err(alloc::string::String::from)?;
            let back = DmaStream::<FromDevice>::map(
                &e.dma,
                DmaBuf::alloc_below(&kdma::PLATFORM, 0xf00, dma::dma_bit_mask(28))
                    .map_err(|e| alloc::format!("{e}"))?,
            )
            .map_err(|e| alloc::format!("{}", e.error))?;
            e.from_device(&back, 0xf00)
                .map_err(alloc::string::String::from)?;
            let got = back.unmap().to_vec();
            let want = |k: usize| {
                if k < 0x800 {
                    join as u8
                } else {
                    join as u8 + 1
                }
            };
            let bad = (0..0xf00).find(|&k| got[k] != want(k));
            kassert!(
                bad.is_none(),
                "edu read across join {join}: byte {bad:?} is {:?}",
                bad.map(|k| got[k])
            );
        }
        drop(m);
        let live = e.dma.mappings().len();
        kassert!(live == 0, "{live} mappings left after the sg unmap");
        kassert!(
            iommu::translate(e.bdf, start.as_u64()).is_err()
                || !iommu::get().is_some_and(|i| i.strict),
            "still translated after a strict sg unmap"
        );
        Ok(())
    })
    .ok_or("edu not bound")?
}

/// Issue #17 item 8: `dmabench` makes two domains per run; dropped, they must
/// give their IDs back (256 on a client unit), and sit on the unit that
/// translates for edu.
fn bench_domain_id_released() -> TestResult {
    let io = iommu::get().ok_or("no IOMMU state")?;
    let (d, ui, did) = iommu::bench_domain_id(true).ok_or("no bench domain")?;
    let edu_unit = edu::with_edu(|e| iommu::domain_of(e.bdf))
        .flatten()
        .map(|x| x.0);
    kassert!(
        edu_unit == Some(ui),
        "bench domain on unit {ui}, edu on {edu_unit:?}"
    );
    let unit = &io.units[ui].unit;
    kassert!(
        iommu::with_unit(unit, |u| u.domain_kind(did)).is_some(),
        "{did} does not exist while in use"
    );
    drop(d);
    kassert!(
        iommu::with_unit(unit, |u| u.domain_kind(did)).is_none(),
        "{did} still exists after its last handle was dropped"
    );
    let (_d2, _, again) = iommu::bench_domain_id(true).ok_or("no second bench domain")?;
    kassert!(again == did, "ID {did} not reused (got {again})");
    Ok(())
}

/// With translation on, no function the kernel has no driver for can reach
/// memory: each sits in a domain where the unit's own page walk finds nothing
/// (kernel memory, low memory, the top of the 32-bit space), and endpoints have
/// bus mastering off. Drivers' devices still have their own domains.
fn unclaimed_blocked() -> TestResult {
    let io = iommu::get().ok_or("no IOMMU state")?;
    let unclaimed = io.unclaimed.lock().clone();
    kassert!(
        unclaimed.iter().any(|u| u.3 == iommu::Unclaimed::Blocked),
        "no function without a driver was blocked: {unclaimed:?}"
    );
    for e in &io.units {
        kassert!(
            e.passthrough.lock().is_none(),
            "unit {:#x} has a pass-through domain with translation on",
            e.base
        );
    }
    let frame =
        crate::mm::alloc_frames(0, mm::buddy::ZoneLimit::Any).map_err(|e| alloc::format!("{e}"))?;
    let kernel_page = frame.as_u64();
    let _ = crate::mm::free_frames(frame, 0);
    let mut checked = 0;
    for d in crate::pci::devices() {
        if crate::pci::driver_of(d.bdf).is_some() {
            continue;
        }
        let Some(u) = unclaimed.iter().find(|u| u.0 == d.bdf) else {
            // A function no unit covers has no IOMMU to put it anywhere.
            kassert!(
                iommu::translate(d.bdf, 0x1000).is_err(),
                "{} has no default domain but translates",
                d.bdf
            );
            continue;
        };
        if u.3 == iommu::Unclaimed::IsaDma {
            let t = iommu::translate(d.bdf, 0x9000).map_err(|e| alloc::format!("{e}"))?;
            kassert!(
                t.pa.as_u64() == 0x9000,
                "ISA bridge {}: 0x9000 walks to {:#x}",
                d.bdf,
                t.pa.as_u64()
            );
            kassert!(
                iommu::translate(d.bdf, 16 << 20).is_err(),
                "ISA bridge {} reaches past 16 MiB",
                d.bdf
            );
            continue;
        }
        if u.3 != iommu::Unclaimed::Blocked {
            continue;
        }
        for iova in [kernel_page, 0x1000, 0xFEE0_0000 - 0x1000] {
            kassert!(
                iommu::translate(d.bdf, iova).is_err(),
                "{} (no driver) reaches IOVA {iova:#x}",
                d.bdf
            );
        }
        if d.class.base != 0x06 {
            kassert!(
                crate::pci::bus_master(d.bdf) == Some(false),
                "{} (no driver) still has bus mastering on",
                d.bdf
            );
        }
        checked += 1;
    }
    kassert!(checked > 0, "no blocked function was checked");
    edu::with_edu(|e| -> TestResult {
        kassert!(
            iommu::domain_of(e.bdf).is_some(),
            "edu has no domain of its own"
        );
        kassert!(
            crate::pci::bus_master(e.bdf) == Some(true),
            "edu lost bus mastering"
        );
        Ok(())
    })
    .ok_or("edu not bound")??;
    Ok(())
}

/// `iommu=pt` is the user asking for untranslated DMA: functions without a
/// driver stay in the pass-through domain, none is blocked.
fn unclaimed_passthrough() -> TestResult {
    let io = iommu::get().ok_or("no IOMMU state")?;
    kassert!(
        io.unclaimed.lock().is_empty(),
        "functions blocked in pass-through mode: {:?}",
        io.unclaimed.lock()
    );
    kassert!(
        io.units.iter().any(|e| e.passthrough.lock().is_some()),
        "no pass-through domain"
    );
    Ok(())
}

/// A VT-d error reaches the DMA layer with its own cause: a page-table page
/// the allocator could not give is "out of memory", never "beyond the
/// domain's address width" (issue #13 item 5).
fn vtd_errors_keep_their_cause() -> TestResult {
    use dma::IommuError as D;
    use iommu_vtd::Error as E;
    let cases = [
        (E::NoMemory, D::OutOfMemory),
        (E::BeyondAddressWidth(1 << 48), D::OutOfRange),
        (E::AlreadyMapped(0x1000), D::AlreadyMapped),
        (E::NotMapped(0x1000), D::NotMapped),
        (E::Misaligned, D::Misaligned),
        (E::InvalidationRejected, D::FlushFailed),
        (E::DomainIdsExhausted, D::DomainUnusable),
    ];
    for (vtd, want) in cases {
        let got = iommu::iommu_error_of(vtd);
        kassert!(got == want, "VT-d '{vtd}' became '{got}' (want '{want}')");
    }
    let oom = alloc::format!("{}", iommu::iommu_error_of(E::NoMemory));
    kassert!(
        !oom.contains("address width"),
        "a page-table allocation failure reads '{oom}'"
    );
    Ok(())
}
