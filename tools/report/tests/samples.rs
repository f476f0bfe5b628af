//! The parser and the page on real serial logs (tests/data, recorded from
//! `./run.sh --profile P` with `report::COMMANDS` typed), and on logs that
//! are cut short, garbled or empty. `intremap.log` and `intremap-off.log` are
//! written by hand in the shell's format for `iommu ir` and the matrix's
//! interrupt remapping line (two units, every IRTE row form).

use proptest::prelude::*;
use report::{parse, render, Bdf, DomainKind, IrteState};

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bdf(s: &str) -> Bdf {
    Bdf::parse(s).unwrap()
}

/// The text of the element that starts at `id="..."`, up to its section's end.
fn section<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id}"));
    let end = page[start..].find("</section>").expect("section closed") + start;
    &page[start..end]
}

const SECTIONS: [&str; 4] = ["pci", "memory", "iommu", "dma"];

#[test]
fn default_profile_log_gives_every_part() {
    let r = parse(&data("default.log"));
    assert_eq!(r.cmdline.as_deref(), Some("iommu=on"));
    assert_eq!(r.pci.len(), 7, "{:#?}", r.pci);
    let edu = r.function_at(bdf("00:03.0")).unwrap();
    assert_eq!((edu.vendor, edu.device), (Some(0x1234), Some(0x11e8)));
    assert_eq!(edu.driver.as_deref(), Some("edu"));
    assert_eq!(edu.bus_master, Some(true));
    assert_eq!(edu.bars.len(), 1);
    assert_eq!(
        (edu.bars[0].index, edu.bars[0].addr, edu.bars[0].size),
        (Some(0), 0xfea00000, 1 << 20)
    );
    assert_eq!(
        edu.name.as_deref(),
        Some("Technical Corp. QEMU edu educational device")
    );
    assert!(r.pci_tree_known);
    assert!(r.pci.iter().all(|f| f.parent.is_none()));

    assert_eq!(r.regions.len(), 11);
    assert_eq!(r.regions[0].kind, "usable");
    assert_eq!(r.regions[4].kind, "bootloader/kernel");
    let names: Vec<&str> = r.zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, ["DMA", "DMA32"]);
    let dma32 = &r.zones[1];
    assert_eq!(dma32.end, Some(0x7ffdf000));
    assert_eq!(dma32.free_blocks.len(), 11);
    assert_eq!(dma32.free_blocks[10], 502);
    assert_eq!(r.swiotlb, Some((0x2000000, 0x23fffff)));

    let io = r.iommu.as_ref().unwrap();
    assert_eq!(io.units.len(), 1);
    assert_eq!(io.units[0].base, 0xfed90000);
    assert_eq!(io.units[0].enabled, Some(true));
    assert_eq!(r.domains.len(), 2);
    let d1 = &r.domains[0];
    assert_eq!((d1.id, &d1.kind), (1, &DomainKind::Translated));
    assert_eq!(d1.devices, [bdf("00:03.0")]);
    assert_eq!(d1.unit, Some(0xfed90000));
    assert_eq!(d1.mappings.len(), 2);
    let coherent = &d1.mappings[0].1;
    assert_eq!(coherent.map_type, "coherent");
    assert_eq!(coherent.size, 8192);
    assert_eq!(coherent.via, "Iommu");
    assert!(coherent.device_addr < 1 << 28, "an IOVA below edu's mask");
    assert_eq!(d1.mappings[1].1.phys, 0x10000000);
    let d2 = &r.domains[1];
    assert_eq!(d2.kind, DomainKind::PassThrough);
    assert!(d2.other_devices);
    assert_eq!(d2.devices.len(), 6);

    let dma = r.dma.as_ref().unwrap();
    assert_eq!(dma.controllers.len(), 2);
    assert_eq!(dma.controllers[0].driver, "i8237");
    assert_eq!(dma.controllers[0].channels.len(), 4);
    assert_eq!(dma.controllers[1].channels[0].name, "dma1chan0");
    assert_eq!(dma.devices.len(), 1);
    assert_eq!(dma.devices[0].mappings.len(), 2);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[test]
fn default_page_has_the_sections_with_content() {
    let page = render::html(&parse(&data("default.log")), "default.log");
    assert!(page.starts_with("<!DOCTYPE html>"));
    let pci = section(&page, "pci");
    assert!(pci.contains("data-bdf=\"00:03.0\""));
    assert!(pci.contains("driver edu"));
    assert!(pci.contains("mem32 0xfea00000 (1 MiB)"));
    let mem = section(&page, "memory");
    assert!(mem.contains("<svg id=\"memory-map\""));
    assert!(mem.contains("data-zone=\"DMA32\""));
    assert!(mem.contains("edu coherent at phys"));
    let io = section(&page, "iommu");
    assert!(io.contains("data-domain=\"1\" data-mappings=\"2\""));
    assert!(
        io.contains("0xfffc000-0xfffdfff"),
        "IOVA range of the streaming mapping"
    );
    assert!(io.contains("0x10000000-0x10001fff"));
    assert!(io.contains("class=\"iova-map\""));
    let dma = section(&page, "dma");
    assert!(dma.contains("data-controller=\"dma0\""));
    assert!(dma.contains("dma1chan0"));
    assert!(
        !page.contains("not in this log"),
        "every part is in this log"
    );
}

#[test]
fn storage_page_lists_the_disks_with_their_controllers_live_mappings() {
    let r = parse(&data("storage.log"));
    let b = r.blocks.as_ref().expect("lsblk in the log");
    let names: Vec<&str> = b.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["sda", "sdb", "nvme0n1"]);
    assert_eq!(b[2].dma_device().as_deref(), Some("0000:00:04.0 nvme"));
    assert_eq!((b[1].sectors, b[1].size.as_str()), (65536, "32.0 MiB"));
    let page = render::html(&r, "storage.log");
    let blk = section(&page, "block");
    assert!(blk.contains("<tr data-disk=\"sdb\">"));
    // Command lists and FIS areas (AHCI), queues (NVMe), from `iommu domains`.
    assert!(blk.contains("4 in domain 2"), "{blk}");
    assert!(blk.contains("4 in domain 3"), "{blk}");
    assert!(blk.contains("<h3>0000:00:04.0 nvme</h3>"));
    assert!(
        blk.matches("<h3>0000:00:1f.2 ahci</h3>").count() == 1,
        "one table per HBA"
    );
    assert!(
        !page.contains("not in this log"),
        "every part is in this log"
    );
    // The default sample: the boot disk, its controller's mappings not listed there.
    let d = parse(&data("default.log"));
    assert_eq!(d.blocks.as_ref().map(|b| b.len()), Some(1));
}

#[test]
fn page_is_self_contained() {
    for log in ["default.log", "pcie.log", "noiommu.log"] {
        let page = render::html(&parse(&data(log)), log);
        for bad in ["<script", "src=", "href=\"http", "url(", "@import", "<link"] {
            assert!(!page.contains(bad), "{log}: page contains {bad:?}");
        }
    }
}

#[test]
fn pcie_bridge_nests_its_bus() {
    let r = parse(&data("pcie.log"));
    let port = r.function_at(bdf("00:04.0")).unwrap();
    assert_eq!(port.secondary_bus, Some(1));
    assert_eq!(port.class_name.as_deref(), Some("PCI bridge"));
    let nic = r.function_at(bdf("01:00.0")).unwrap();
    assert_eq!(nic.parent, Some(bdf("00:04.0")));
    let page = render::html(&r, "pcie.log");
    let pci = section(&page, "pci");
    // 01:00.0 is inside the root port's list item, before the next root function.
    let port_at = pci.find("data-bdf=\"00:04.0\"").unwrap();
    let nic_at = pci.find("data-bdf=\"01:00.0\"").unwrap();
    let next_at = pci.find("data-bdf=\"00:1f.0\"").unwrap();
    assert!(port_at < nic_at && nic_at < next_at);
    assert!(pci[port_at..nic_at].contains("<ul>"));
    assert!(pci.contains("bridge to bus 01"));
}

#[test]
fn noiommu_says_so_and_shows_the_bounce() {
    let r = parse(&data("noiommu.log"));
    let io = r.iommu.as_ref().unwrap();
    assert!(io.error.as_deref().unwrap().contains("no IOMMU"));
    assert!(r.domains.is_empty());
    let dev = &r.dma.as_ref().unwrap().devices[0];
    assert_eq!(dev.mappings.len(), 2);
    assert_eq!(dev.mappings[1].via, "Bounce");
    let page = render::html(&r, "noiommu.log");
    assert!(section(&page, "iommu").contains("no IOMMU in this boot"));
    assert!(page.contains("<section id=\"problems\">"));
}

#[test]
fn bigmem_has_a_normal_zone_above_4g() {
    let r = parse(&data("bigmem.log"));
    let normal = r.zones.iter().find(|z| z.name == "Normal").unwrap();
    assert!(normal.start.unwrap() >= 1 << 32);
    assert_eq!(normal.end, Some(0x200000000));
    let page = render::html(&r, "bigmem.log");
    assert!(section(&page, "memory").contains("data-zone=\"Normal\""));
}

#[test]
fn two_edu_domains_each_with_their_own_mappings() {
    let r = parse(&data("two-edu.log"));
    let ids: Vec<(u32, &str)> = r.domains.iter().map(|d| (d.id, d.kind.name())).collect();
    assert_eq!(
        ids,
        [(1, "translated"), (2, "translated"), (3, "pass-through")]
    );
    assert_eq!(r.domains[0].mappings.len(), 2);
    assert_eq!(r.domains[1].devices, [bdf("00:04.0")]);
    assert_eq!(
        r.domains[1].mapping_counts,
        [("0000:00:04.0 edu".to_string(), 0)]
    );
    assert!(r.domains[1].mappings.is_empty());
}

#[test]
fn older_build_log_without_domain_suffix() {
    // Before 'iommu domains' named the domain on its count line.
    let r = parse(&data("older-build.log"));
    assert_eq!(
        r.domains[0].mapping_counts,
        [("0000:00:03.0 edu".to_string(), 0)]
    );
    assert!(r.dma.is_none());
    let page = render::html(&r, "older-build.log");
    assert!(section(&page, "dma").contains("not in this log"));
    assert!(section(&page, "iommu").contains("no live mappings in this log"));
}

#[test]
fn empty_log_says_not_in_this_log_everywhere() {
    let page = render::html(&parse(""), "empty");
    for id in SECTIONS {
        assert!(
            section(&page, id).contains("class=\"missing\""),
            "{id}: {}",
            section(&page, id)
        );
    }
}

#[test]
fn boot_messages_alone_give_pci_memory_and_domains() {
    // A boot that never reached the shell: only the kernel's own messages.
    let log = data("default.log");
    let cut = &log[..log.find("busmaster> ").unwrap()];
    let r = parse(cut);
    let edu = r.function_at(bdf("00:03.0")).unwrap();
    assert_eq!(edu.driver.as_deref(), Some("edu"));
    assert_eq!(edu.bars[0].addr, 0xfea00000);
    assert!(!r.pci_tree_known);
    assert_eq!(r.zones.len(), 2);
    assert_eq!(r.zones[1].managed, Some(518287));
    assert_eq!(r.domains.len(), 2);
    let page = render::html(&r, "cut");
    assert!(section(&page, "pci").contains("bridge nesting not in this log"));
    assert!(section(&page, "iommu").contains("domains below are from the boot messages only"));
    assert!(section(&page, "dma").contains("not in this log"));
}

fn assert_page_ok(page: &str) {
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.ends_with("</html>\n"));
    for id in SECTIONS {
        let _ = section(page, id);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_text_renders(s in ".{0,2000}") {
        assert_page_ok(&render::html(&parse(&s), &s));
    }

    #[test]
    fn log_cut_anywhere_renders(frac in 0.0f64..1.0) {
        let log = data("pcie.log");
        let mut at = (log.len() as f64 * frac) as usize;
        while !log.is_char_boundary(at) {
            at -= 1;
        }
        assert_page_ok(&render::html(&parse(&log[..at]), "cut"));
    }

    #[test]
    fn intremap_log_cut_anywhere_renders(frac in 0.0f64..1.0) {
        let log = data("intremap.log");
        let mut at = (log.len() as f64 * frac) as usize;
        while !log.is_char_boundary(at) {
            at -= 1;
        }
        assert_page_ok(&render::html(&parse(&log[..at]), "cut"));
    }

    #[test]
    fn garbled_lines_render(
        picks in prop::collection::vec(0usize..400, 0..300),
        junk in prop::collection::vec("[ -~\t\u{1b}\r]{0,60}", 0..40),
    ) {
        // Lines of a real log, dropped, repeated and reordered, with junk
        // and random byte cuts inside lines.
        let log = data("two-edu.log");
        let lines: Vec<&str> = log.lines().collect();
        let mut text = String::new();
        for (i, p) in picks.iter().enumerate() {
            let l = lines[p % lines.len()];
            let cut = (p * 7) % (l.len() + 1);
            let l = if l.is_char_boundary(cut) && i % 3 == 0 { &l[..cut] } else { l };
            text.push_str(l);
            if let Some(j) = junk.get(i % junk.len().max(1)) {
                if i % 5 == 0 {
                    text.push_str(j);
                }
            }
            text.push('\n');
        }
        assert_page_ok(&render::html(&parse(&text), "garbled"));
    }
}

#[test]
fn attack_matrix_in_the_log_becomes_a_table() {
    let r = parse(&data("attack.log"));
    assert_eq!(r.attacks.len(), 1);
    let m = &r.attacks[0];
    assert_eq!(m.mode, "lazy+untrusted");
    let cell = |a: &str| {
        m.rows
            .iter()
            .find(|x| x.attack == a)
            .map(|x| (x.verdict.as_str(), x.faults))
            .unwrap_or_else(|| panic!("no row {a}: {:?}", m.rows))
    };
    assert_eq!(cell("kernel-write"), ("blocked", 1));
    assert_eq!(cell("sub-page").0, "blocked");
    assert_eq!(cell("stale-iotlb").0, "blocked");
    assert_eq!(cell("msi-inject").0, "ALLOWED");
    assert_eq!(cell("ats").0, "n/a");
    let page = render::html(&r, "attack.log");
    let s = section(&page, "attacks");
    assert!(s.contains("<th>lazy+untrusted</th>"), "{s}");
    assert!(s.contains(">ALLOWED</td>"), "{s}");
    // A log without the command has no such section.
    assert!(!render::html(&parse(&data("default.log")), "default.log").contains("id=\"attacks\""));
}

#[test]
fn interrupt_remapping_table_is_parsed_per_unit() {
    let r = parse(&data("intremap.log"));
    let ir = r.intremap.as_ref().expect("iommu ir in the log");
    assert_eq!(ir.on, Some(true));
    assert_eq!(ir.in_use, Some(9));
    assert_eq!(ir.error, None);
    let bases: Vec<u64> = ir.units.iter().map(|u| u.base).collect();
    assert_eq!(bases, [0xfed90000, 0xfed91000]);
    let u = &ir.units[0];
    assert_eq!(u.table, Some(0x1234000));
    assert_eq!(u.compat_blocked, Some(true));
    assert!(u.compat.as_deref().unwrap().contains("GSTS.CFIS=0"));
    assert_eq!(ir.units[1].compat_blocked, Some(false));
    assert_eq!(ir.units[1].entries.len(), 1);
    let idx: Vec<u32> = u.entries.iter().map(|e| e.index).collect();
    assert_eq!(idx, [0, 1, 2, 3, 4, 5, 9, 10]);
    let present = |i: usize| match &u.entries[i].state {
        IrteState::Present {
            vector,
            dest,
            trigger,
            source_check,
        } => (*vector, *dest, trigger.as_str(), source_check.as_str()),
        other => panic!("IRTE {i}: {other:?}"),
    };
    assert_eq!(present(0), (0x31, 0, "edge", "requester ff:00.0"));
    assert_eq!(u.entries[0].used_by, "IO-APIC 0 line, GSI 1");
    assert_eq!(present(3), (0x53, 0, "level", "requester 00:1f.2 (SQ 1)"));
    assert_eq!(u.entries[3].used_by, "MSI 00:1f.2 (MSI ahci)");
    assert_eq!(present(4).3, "bus 02..03");
    assert_eq!(u.entries[4].used_by, "MSI 02:00.0 (MSI-X nvme admin)");
    assert_eq!(present(5), (0x55, 1, "edge", "none (any requester)"));
    assert_eq!(u.entries[6].state, IrteState::NotPresent);
    assert_eq!(u.entries[6].used_by, "MSI 00:04.0 (MSI edu)");
    assert_eq!(
        u.entries[7].state,
        IrteState::Unreadable("some error text".into())
    );
    assert_eq!(u.entries[7].used_by, "MSI 00:05.0 (MSI edu)");

    // The `iommu` view's line for the unit, and the matrix's.
    let unit = &r.iommu.as_ref().unwrap().units[0];
    assert_eq!(unit.ir_enabled, Some(true));
    assert_eq!(unit.ir_table, Some(0x1234000));
    assert_eq!(unit.ir_in_use, Some(8));
    assert_eq!(unit.enabled, Some(true), "translation still read");
    assert_eq!(r.attacks.len(), 1);
    assert_eq!(r.attacks[0].interrupt_remapping, Some(true));
    assert_eq!(r.attacks[0].rows.len(), 5);
}

#[test]
fn interrupt_remapping_section_shows_each_irte() {
    let page = render::html(&parse(&data("intremap.log")), "intremap.log");
    assert!(page.contains("<a href=\"#intremap\">"));
    let s = section(&page, "intremap");
    assert!(s.contains("<h2>Interrupt remapping</h2>"), "{s}");
    assert!(s.contains("data-intremap=\"on\""), "{s}");
    assert!(s.contains("unit 0xfed90000 · table 0x1234000"), "{s}");
    assert!(s.contains("unit 0xfed91000 · table 0x1300000"), "{s}");
    assert!(
        s.contains("<th>source-id check</th><th>used by</th>"),
        "{s}"
    );
    assert_eq!(s.matches("<tr class=\"irte\"").count(), 9, "{s}");
    assert!(
        s.contains("<tr class=\"irte\" data-irte=\"3\"><td class=\"num\">3</td><td class=\"num\">0x53</td><td class=\"num\">0</td><td>level</td><td>requester 00:1f.2 (SQ 1)</td><td>MSI 00:1f.2 (MSI ahci)</td></tr>"),
        "{s}"
    );
    assert!(
        s.contains("<td colspan=\"4\">not present</td><td>MSI 00:04.0 (MSI edu)</td>"),
        "{s}"
    );
    assert!(s.contains("unreadable: some error text"), "{s}");
    assert!(!s.contains("not in this log"), "{s}");
    // The unit's state beside its translation state, the matrix's in its column head.
    assert!(
        section(&page, "iommu").contains("<td>enabled, table 0x1234000 (8 entries in use)</td>"),
        "{}",
        section(&page, "iommu")
    );
    assert!(section(&page, "attacks").contains("<th>strict · IR on</th>"));
}

#[test]
fn interrupt_remapping_off_says_so() {
    let r = parse(&data("intremap-off.log"));
    let ir = r.intremap.as_ref().expect("iommu ir in the log");
    assert_eq!(ir.on, Some(false));
    assert_eq!(ir.off_reason.as_deref(), Some("intremap=off"));
    assert!(ir.units.is_empty());
    assert_eq!(r.iommu.as_ref().unwrap().units[0].ir_enabled, Some(false));
    assert_eq!(r.attacks[0].interrupt_remapping, Some(false));
    assert_eq!(r.attacks[0].rows.len(), 5);
    let page = render::html(&r, "intremap-off.log");
    let s = section(&page, "intremap");
    assert!(s.contains("data-intremap=\"off\""), "{s}");
    assert!(s.contains("compatibility format"), "{s}");
    assert!(!s.contains("class=\"irte\""), "{s}");
    assert!(section(&page, "iommu").contains("<td>disabled</td>"));
    assert!(section(&page, "attacks").contains("<th>strict · IR off</th>"));

    // No IOMMU: the command's error.
    let r = parse("busmaster> iommu ir\nerror: iommu: no IOMMU (no DMAR table)\n");
    assert_eq!(
        r.intremap.as_ref().and_then(|i| i.error.as_deref()),
        Some("iommu: no IOMMU (no DMAR table)")
    );
    assert!(section(&render::html(&r, "x"), "intremap").contains("no IOMMU in this boot"));
}

#[test]
fn interrupt_remapping_section_only_when_the_build_knows_it() {
    // Older builds: no section, no IR column, the matrix head as it was.
    for log in ["default.log", "attack.log"] {
        let r = parse(&data(log));
        assert!(r.intremap.is_none());
        assert!(r.attacks.iter().all(|m| m.interrupt_remapping.is_none()));
        let page = render::html(&r, log);
        assert!(!page.contains("id=\"intremap\""), "{log}");
        assert!(!page.contains("<th>interrupt remapping</th>"), "{log}");
    }
    // A newer build whose log lacks `iommu ir`: the section says what to run.
    let log = data("intremap.log");
    let cut = log.replace("busmaster> iommu ir\n", "busmaster> something else\n");
    let page = render::html(&parse(&cut), "cut");
    let s = section(&page, "intremap");
    assert!(s.contains("class=\"missing\""), "{s}");
    assert!(s.contains("run &#39;iommu ir&#39;"), "{s}");
}
