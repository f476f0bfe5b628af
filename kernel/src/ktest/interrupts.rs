//! Interrupt controllers in the running kernel.

use core::sync::atomic::{AtomicUsize, Ordering};

use super::{KTest, TestResult};
use crate::arch::idt::{self, TrapFrame};
use crate::arch::tsc as time;
use crate::{arch::apic, kassert};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "apic::timer_ticks_at_100hz_against_the_tsc",
        run: timer_rate,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "apic::serial_irq4_wakes_and_counts",
        run: serial_irq,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "apic::dynamic_vectors_are_distinct_and_dispatch",
        run: dynamic_vectors,
        profiles: &[],
        manual: false,
    },
];

/// Runs `f` and returns how long it took by the TSC and by the HPET main
/// counter, both read at the same two moments.
pub fn measure_against_hpet(f: impl FnOnce()) -> Result<(u64, u64), alloc::string::String> {
    let h = crate::arch::hpet::get().ok_or("no usable HPET")?;
    let (t0, c0) = h.paired_read();
    f();
    let (t1, c1) = h.paired_read();
    Ok((
        time::ticks_to_ns(t1 - t0),
        h.ticks_to_ns(c1.wrapping_sub(c0)),
    ))
}

fn timer_rate() -> TestResult {
    kassert!(apic::ready(), "APIC not initialised");
    kassert!(
        x86_64::instructions::interrupts::are_enabled(),
        "interrupts are off"
    );
    let k0 = apic::ticks();
    let (_, hpet_ns) = measure_against_hpet(|| apic::sleep_ms(300))?;
    let ticks = apic::ticks() - k0;
    kassert!(
        hpet_ns >= 280_000_000,
        "sleep_ms(300) returned after {hpet_ns} ns by the HPET"
    );
    // The tick rate must match the HPET's idea of time: TICK_HZ per second,
    // within 20% (a late tick on a loaded host may be merged, not invented).
    let expected = hpet_ns * apic::TICK_HZ / 1_000_000_000;
    kassert!(
        ticks * 10 >= expected * 8 && ticks * 10 <= expected * 12,
        "{ticks} ticks in {} ms by the HPET (expected about {expected})",
        hpet_ns / 1_000_000
    );
    Ok(())
}

fn serial_irq() -> TestResult {
    kassert!(
        crate::drivers::serial::rx_interrupt_enabled(),
        "COM1 receive interrupt not enabled"
    );
    let vector = apic::IOAPIC_VECTOR_BASE + 4;
    kassert!(apic::vector_name(vector) == "IO-APIC", "vector naming");
    // The runner types nothing during tests, so drive the line ourselves:
    // loopback mode (MCR bit 4) feeds our own transmitted byte back into the
    // receiver, which raises IRQ 4 like a remote keystroke.
    let before = idt::irq_count(vector);
    let mcr = crate::arch::port::inb(0x3F8 + 4);
    crate::arch::port::outb(0x3F8 + 4, mcr | 0x10);
    crate::arch::port::outb(0x3F8, b'Z');
    let got = (0..100).find_map(|_| {
        apic::sleep_ms(10);
        crate::console::try_read_byte()
    });
    crate::arch::port::outb(0x3F8 + 4, mcr);
    kassert!(got == Some(b'Z'), "loopback byte not received: {got:?}");
    kassert!(
        idt::irq_count(vector) > before,
        "IRQ 4 did not fire (count {before})"
    );
    Ok(())
}

static HITS: AtomicUsize = AtomicUsize::new(0);

fn hit(f: &mut TrapFrame) {
    HITS.fetch_add(f.vector as usize, Ordering::SeqCst);
}

fn dynamic_vectors() -> TestResult {
    let a = apic::alloc_vector(hit).map_err(alloc::string::String::from)?;
    let b = apic::alloc_vector(hit).map_err(alloc::string::String::from)?;
    kassert!(
        a != b && (0x50..=0xDF).contains(&a) && (0x50..=0xDF).contains(&b),
        "vectors {a:#x} {b:#x}"
    );
    let (addr, data) = apic::msi_message(a);
    kassert!(
        addr & 0xFFF0_0000 == 0xFEE0_0000 && data == a as u32,
        "MSI message {addr:#x}/{data:#x}"
    );
    HITS.store(0, Ordering::SeqCst);
    // SAFETY: both vectors have handlers installed just above.
    unsafe {
        core::arch::asm!("int {v}", v = const 0x50u8, options(nomem, nostack));
    }
    kassert!(
        a != 0x50 || HITS.load(Ordering::SeqCst) == 0x50,
        "vector 0x50 did not reach its handler"
    );
    Ok(())
}
