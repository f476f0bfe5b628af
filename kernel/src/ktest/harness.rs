//! The harness's own deliberate failures. Each is `manual`: the host runner
//! boots it alone and checks that the failure is caught and reported the way a
//! real bug would be (boot/src/ktest.rs, `META_TESTS`).

use super::{KTest, TestResult};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "harness::deliberate_page_fault",
        run: page_fault,
        profiles: &[],
        manual: true,
    },
    KTest {
        name: "harness::deliberate_panic",
        run: panic,
        profiles: &[],
        manual: true,
    },
    KTest {
        name: "harness::deliberate_hang",
        run: hang,
        profiles: &[],
        manual: true,
    },
    KTest {
        name: "harness::deliberate_triple_fault",
        run: triple_fault,
        profiles: &[],
        manual: true,
    },
    KTest {
        name: "harness::deliberate_stack_overflow",
        run: stack_overflow,
        profiles: &[],
        manual: true,
    },
];

/// An address in the canonical lower half that nothing maps.
pub const UNMAPPED: u64 = 0x0000_0dea_dbee_f000;

fn page_fault() -> TestResult {
    let ptr = UNMAPPED as *const u64;
    // SAFETY: deliberately unsound: the read must fault (that is the test); it
    // never returns a value.
    let v = unsafe { core::ptr::read_volatile(ptr) };
    Err(alloc::format!(
        "read of unmapped {UNMAPPED:#x} returned {v:#x}"
    ))
}

fn panic() -> TestResult {
    panic!("deliberate panic for the harness self-test")
}

fn hang() -> TestResult {
    loop {
        core::hint::spin_loop();
    }
}

fn triple_fault() -> TestResult {
    crate::arch::idt::load_empty_idt();
    x86_64::instructions::interrupts::int3();
    Err("int3 with an empty IDT returned".into())
}

#[inline(never)]
#[allow(unconditional_recursion)] // the point: overflow the stack
fn recurse(depth: u64) -> u64 {
    let buf = core::hint::black_box([depth; 64]);
    recurse(depth + 1) + buf[3]
}

fn stack_overflow() -> TestResult {
    let v = recurse(0);
    Err(alloc::format!("unbounded recursion returned {v}"))
}
