//! `attack msi-inject`: the device raises interrupts the kernel never gave
//! it, by DMA-writing into the interrupt window (0xFEEx_xxxx): a
//! compatibility-format message with a vector of its choosing and, with
//! interrupt remapping on, remappable-format messages naming an entry the
//! kernel gave another requester and one nobody was given. What QEMU 7.2
//! delivers differs from what the VT-d spec says (hw-facts §4.12): each line
//! says which.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use hal::DmaAddr;

use super::{faults_since, load_device, AttackError, Outcome, Verdict};
use crate::arch::{apic, tsc};
use crate::drivers::edu::{Edu, EduDir};
use crate::iommu;

/// A vector the bench aims forged messages at (0: none yet) and how many
/// times it arrived (counted by its interrupt handler).
struct InjectTarget {
    vector: AtomicU8,
    delivered: AtomicU64,
}

/// The vector the device picks for itself (compatibility format).
static INJECT: InjectTarget = InjectTarget {
    vector: AtomicU8::new(0),
    delivered: AtomicU64::new(0),
};

/// The vector of an IRTE the kernel gave another requester (the victim).
static VICTIM: InjectTarget = InjectTarget {
    vector: AtomicU8::new(0),
    delivered: AtomicU64::new(0),
};

fn injected(_f: &mut crate::arch::idt::TrapFrame) {
    INJECT.delivered.fetch_add(1, Ordering::Relaxed);
}

fn victim_hit(_f: &mut crate::arch::idt::TrapFrame) {
    VICTIM.delivered.fetch_add(1, Ordering::Relaxed);
}

fn target_vector(
    t: &InjectTarget,
    handler: crate::arch::idt::IrqHandler,
    name: &'static str,
) -> Result<u8, AttackError> {
    let mut v = t.vector.load(Ordering::Relaxed);
    if v == 0 {
        v = apic::alloc_vector(handler).map_err(AttackError::NoVector)?;
        apic::set_vector_name(v, name);
        t.vector.store(v, Ordering::Relaxed);
    }
    Ok(v)
}

/// Interrupts counted on every device vector but the IO-APIC's routed lines
/// (the serial port's, busy with the shell's input, would count otherwise)
/// and edu's own (it signals each finished transfer).
fn device_interrupts(edu_vector: u8) -> u64 {
    let mut own: Vec<u8> = crate::arch::ioapic::routed_lines()
        .iter()
        .map(|l| l.1)
        .collect();
    own.push(edu_vector);
    (0x30..=0xDFu8)
        .filter(|v| !own.contains(v))
        .map(|v| crate::arch::idt::irq_count(v) as u64)
        .sum()
}

/// edu DMA-writes `data` to `addr` (in the interrupt window); returns how many
/// interrupts `arrived` counted, waiting a generous bound for the first.
fn forge(e: &Edu, addr: u64, data: u32, arrived: &dyn Fn() -> u64) -> Result<u64, AttackError> {
    load_device(e, &data.to_le_bytes())?;
    let before = arrived();
    // SAFETY: the attack under study: a write to the MSI address window.
    unsafe { e.transfer_raw(EduDir::FromDevice, DmaAddr::new(addr), 4) }?;
    // The interrupt is the write itself; give it a generous bound to arrive.
    let hz = tsc::tsc_hz().max(1);
    let end = tsc::rdtsc() + hz;
    while arrived() == before && tsc::rdtsc() < end {
        core::hint::spin_loop();
    }
    Ok(arrived() - before)
}

/// The device raises interrupts the kernel never gave it, three ways:
/// a compatibility-format MSI with a vector of its choosing; with interrupt
/// remapping on, a remappable-format one naming an IRTE the kernel gave
/// another requester; and one naming an entry nobody was given.
pub(super) fn msi_inject(e: &Edu) -> Result<Outcome, AttackError> {
    if e.dma.params().dma_mask < 0xFFFF_FFFF {
        return Ok(Outcome::unavailable(
            "edu reaches only 28 bits (QEMU's default dma_mask), not 0xFEE0_0000: boot --profile attack (edu,dma_mask=0xffffffff)",
        ));
    }
    let f = iommu::fault_count();
    let mut lines = Vec::new();
    let v = target_vector(&INJECT, injected, "attack: injected vector")?;
    let (addr, data) = apic::msi_message(v);
    let compat = forge(e, addr, data, &|| INJECT.delivered.load(Ordering::Relaxed))?;
    lines.push(alloc::format!(
        "tried: write {data:#x} (vector {v:#x}, fixed delivery) to {addr:#x}, a compatibility-format MSI the kernel never gave it"
    ));
    let ir_on = crate::arch::irq_remap::enabled();
    lines.push(alloc::format!(
        "got: vector {v:#x} delivered {compat} time(s){}",
        match (ir_on, compat > 0) {
            (true, true) => " (interrupt remapping is on and GSTS.CFIS is clear, so a unit that follows the spec blocks it, fault 0x25; QEMU 7.2 does not implement CFI)",
            (true, false) => " (blocked: compatibility format is off under interrupt remapping)",
            (false, _) => " (no interrupt remapping: the message itself names the vector)",
        }
    ));
    let mut forged = 0;
    if ir_on {
        // An entry the kernel gave another requester: the host bridge's
        // requester ID, which never sends MSIs, delivering to a counter.
        let victim = pci::Bdf::b(0, 0, 0);
        let v2 = target_vector(&VICTIM, victim_hit, "attack: victim's IRTE")?;
        let (addr, data) = apic::msi_for(victim, v2);
        match crate::arch::irq_remap::irte_of(v2) {
            Some(h) => {
                forged = forge(e, addr, data, &|| VICTIM.delivered.load(Ordering::Relaxed))?;
                lines.push(alloc::format!(
                    "tried: a remappable-format MSI naming IRTE {h} (vector {v2:#x}, source-id check: requester {} only) at {addr:#x}",
                    victim.short()
                ));
                lines.push(alloc::format!(
                    "got: vector {v2:#x} delivered {forged} time(s){}",
                    if forged > 0 {
                        " (the source-id check would stop it, fault 0x26; QEMU 7.2 checks it only for real MSIs, not for a device's DMA writes)"
                    } else {
                        " (blocked by the source-id check)"
                    }
                ));
            }
            None => lines.push(String::from(
                "not tried: no IRTE could be given to the victim (see the log)",
            )),
        }
        let unused = 255u16;
        let (addr, data) = iommu_vtd::intremap::remappable_msi(unused, Some(0));
        let got = forge(e, addr, data, &|| device_interrupts(e.vector))?;
        lines.push(alloc::format!(
            "tried: a remappable-format MSI naming IRTE {unused}, which nobody was given, at {addr:#x}"
        ));
        lines.push(alloc::format!(
            "got: {got} interrupt(s) on any vector but the IO-APIC lines' and edu's own{}",
            if got == 0 {
                " (blocked: the entry is not present; QEMU 7.2 drops it without a fault record)"
            } else {
                ""
            }
        ));
        forged += got;
    }
    Ok(Outcome {
        verdict: if compat + forged > 0 {
            Verdict::Allowed
        } else {
            Verdict::Blocked
        },
        bytes: 0,
        lines,
        faults: faults_since(f),
    })
}
