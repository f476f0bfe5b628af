//! The firmware's AML in the running kernel: `\_S5` evaluated by the
//! interpreter, and PCI INTx routes from q35's `_PRT`, held against the wiring
//! QEMU 7.2 builds (hw/i386/acpi-build.c, `build_q35_routing_table`).

use super::{KTest, TestResult};
use crate::acpi::aml;
use crate::kassert;
use crate::pci::intx;

pub static TESTS: &[KTest] = &[
    KTest {
        name: "acpi::aml_namespace_loads_and_s5_evaluates",
        run: s5_evaluated,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "pci::intx_routes_from_prt_match_qemu_q35_wiring",
        run: q35_routes,
        profiles: &[],
        manual: false,
    },
];

fn s5_evaluated() -> TestResult {
    let s5 = aml::sleep_type_s5().map_err(|e| alloc::format!("\\_S5: {e}"))?;
    // QEMU's q35 DSDT: Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero }).
    kassert!(
        s5 == (0, 0),
        "\\_S5 evaluated to {s5:?}, QEMU's q35 says (0, 0)"
    );
    Ok(())
}

/// The GSI QEMU's q35 `PRTA` gives slot `slot`, pin `pin` (1 = INTA): slots
/// 0x00..=0x17 rotate over PIRQ E..H by slot, 0x18 and 0x1e start at E, 0x19..=0x1d
/// and 0x1f (the ICH9 functions) start at A; link GSIA..GSIH is GSI 16..23.
fn q35_gsi(slot: u8, pin: u8) -> u32 {
    let i = (pin - 1) as u32;
    match slot {
        0x00..=0x17 => 20 + ((slot as u32 & 3) + i) % 4,
        0x18 | 0x1e => 20 + i,
        _ => 16 + i,
    }
}

fn q35_routes() -> TestResult {
    let routes = intx::routes();
    kassert!(
        !routes.is_empty(),
        "no function with an interrupt pin was routed"
    );
    let mut on_root = 0;
    for (bdf, pin, r) in &routes {
        let r = r
            .as_ref()
            .map_err(|e| alloc::format!("{bdf} INT{}: {e}", intx::pin_name(*pin)))?;
        // q35's GSI links: Interrupt (ResourceConsumer, Level, ActiveHigh, Shared).
        kassert!(
            r.level && !r.active_low,
            "{bdf}: {} active {}, q35's links are level, active high",
            if r.level { "level" } else { "edge" },
            if r.active_low { "low" } else { "high" }
        );
        kassert!(
            r.link.as_deref().is_some_and(|l| l.contains("GSI")),
            "{bdf}: link {:?}, expected an IO-APIC link GSIx (\\_PIC(1) not honoured?)",
            r.link
        );
        if bdf.bus == 0 {
            on_root += 1;
            let want = q35_gsi(bdf.device, *pin);
            kassert!(
                r.gsi == want,
                "{bdf} INT{}: GSI {}, QEMU's q35 wiring gives {want}",
                intx::pin_name(*pin),
                r.gsi
            );
        } else {
            // QEMU's root ports carry no _PRT: the pin is swizzled up to the
            // root-bus slot (device 0 below a port keeps its pin), whose entry
            // in the host bridge's table gives the GSI.
            let (slot, p) = r.looked_up;
            kassert!(
                r.gsi == q35_gsi(slot, p),
                "{bdf}: GSI {} for root-bus slot {slot:#x} INT{}, q35 gives {}",
                r.gsi,
                intx::pin_name(p),
                q35_gsi(slot, p)
            );
            if bdf.device == 0 {
                kassert!(
                    p == *pin,
                    "{bdf}: INT{} swizzled to INT{} through device-0 bridges",
                    intx::pin_name(*pin),
                    intx::pin_name(p)
                );
            }
        }
    }
    kassert!(on_root >= 2, "only {on_root} root-bus functions with a pin");
    // The ICH9 AHCI controller every q35 has: slot 0x1f, INTA -> GSIA (16).
    let ahci = routes
        .iter()
        .find(|(b, _, _)| b.bus == 0 && b.device == 0x1f && b.function == 2);
    kassert!(
        ahci.is_some(),
        "00:1f.2 (ICH9 AHCI) not among the routed functions"
    );
    Ok(())
}
