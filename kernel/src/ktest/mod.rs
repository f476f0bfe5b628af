//! In-kernel tests: a registry of named test functions run in a "test" boot.
//!
//! Protocol on the serial port, read by the host runner (boot/src/ktest.rs):
//!
//! ```text
//! BUSMASTER-TEST begin profile=<name> total=<n> skip=<k>
//! BUSMASTER-TEST start <test>
//! BUSMASTER-TEST ok <test> <microseconds>us
//! BUSMASTER-TEST fail <test>: <reason>
//! BUSMASTER-TEST end passed=<p> failed=<f>
//! ```
//!
//! A test that panics or faults ends the boot; the panic handler and the
//! exception handler print the `fail` line for the current test, and the runner
//! boots again with `skip=` past it. Tests marked `manual` run only when named
//! with `only=<test>` (the harness's own deliberate-crash tests).

mod basic;
mod console;
mod dmaapi;
mod dmaengine;
mod harness;
mod interrupts;
mod intx;
mod iommu;
mod irq_remap;
mod isa;
mod memory;
mod platform;
mod storage;
mod sync;

use alloc::string::String;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::arch::reboot::{exit_qemu, QemuExit};
use crate::arch::tsc as time;
use crate::cmdline::Cmdline;
use crate::kprintln;

pub type TestResult = Result<(), String>;

pub struct KTest {
    pub name: &'static str,
    pub run: fn() -> TestResult,
    /// Profiles this test runs in; empty = every profile.
    pub profiles: &'static [&'static str],
    /// Only run when named explicitly (deliberate crashes, hangs).
    pub manual: bool,
}

/// Every test, in run order.
fn all() -> impl Iterator<Item = &'static KTest> {
    basic::TESTS
        .iter()
        .chain(memory::TESTS.iter())
        .chain(interrupts::TESTS.iter())
        .chain(sync::TESTS.iter())
        .chain(platform::TESTS.iter())
        .chain(intx::TESTS.iter())
        .chain(isa::TESTS.iter())
        .chain(dmaengine::TESTS.iter())
        .chain(dmaapi::TESTS.iter())
        .chain(iommu::TESTS.iter())
        .chain(irq_remap::TESTS.iter())
        .chain(console::TESTS.iter())
        .chain(harness::TESTS.iter())
        .chain(storage::TESTS.iter())
}

/// Fails the current test with a message naming the source line.
#[macro_export]
macro_rules! kassert {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(alloc::format!("{} ({}:{})", format_args!($($arg)+), file!(), line!()));
        }
    };
}

/// Waits for `done` to become true, sleeping between interrupts, for at most
/// `bound_ms` of TSC time; returns whether it did. Tests wait for the event
/// they are about (an interrupt counted, a transfer finished), never for a
/// fixed time: a slow or busy host may make the event late, and the bound is
/// there only to end a test whose event never comes.
pub fn wait_until(bound_ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let t0 = time::rdtsc();
    // Without a calibrated TSC or a ticking timer, count 1 ms steps instead.
    let clocked = time::tsc_hz() != 0 && crate::arch::apic::ready();
    let mut steps = 0u64;
    loop {
        if done() {
            return true;
        }
        let waited_ms = if clocked {
            time::ticks_to_ns(time::rdtsc() - t0) / 1_000_000
        } else {
            steps
        };
        if waited_ms > bound_ms {
            return done();
        }
        if clocked {
            // Until the next interrupt: the timer tick at the latest.
            x86_64::instructions::interrupts::enable_and_hlt();
        } else {
            time::delay_us(1000);
            steps += 1;
        }
    }
}

/// The bound every event wait in the tests uses: long enough that only an
/// event that never comes reaches it, even on a slow, loaded host.
pub const EVENT_BOUND_MS: u64 = 10_000;

// The name of the running test, for the panic and exception reports.
static CURRENT: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);

fn set_current(name: Option<&'static str>) {
    let (ptr, len) = name.map_or((core::ptr::null_mut(), 0), |n| {
        (n.as_ptr() as *mut u8, n.len())
    });
    CURRENT_LEN.store(len, Ordering::SeqCst);
    CURRENT.store(ptr, Ordering::SeqCst);
}

/// The fatal path's reporter: names the test that died, for the runner.
fn report_fatal(out: &mut dyn core::fmt::Write, what: &crate::console::panic::Fatal) {
    use crate::console::panic::Fatal;
    let Some(test) = current() else { return };
    let _ = match what {
        Fatal::Exception { vector, rip } => writeln!(
            out,
            "BUSMASTER-TEST fail {test}: CPU exception vector {vector} at RIP={rip:#x}"
        ),
        Fatal::Panic {
            file,
            line,
            col,
            message,
        } => writeln!(
            out,
            "BUSMASTER-TEST fail {test}: panicked at {file}:{line}:{col}: {message}"
        ),
    };
}

/// The test running now, if any.
pub fn current() -> Option<&'static str> {
    let ptr = CURRENT.load(Ordering::SeqCst);
    if ptr.is_null() {
        return None;
    }
    let len = CURRENT_LEN.load(Ordering::SeqCst);
    // SAFETY: `ptr`/`len` always come from one `&'static str` in `set_current`.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    core::str::from_utf8(bytes).ok()
}

pub fn run(cmdline: &Cmdline) -> ! {
    if let Err(e) = crate::console::panic::register_reporter(report_fatal) {
        kprintln!("ktest: cannot hook the fatal path ({e}); a crash will not name its test");
    }
    let profile = cmdline.get("profile").unwrap_or("default");
    let skip: usize = cmdline
        .get("skip")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let only = cmdline.get("only");
    let selected = || {
        all().filter(move |t| match only {
            Some(name) => t.name == name,
            None => !t.manual && (t.profiles.is_empty() || t.profiles.contains(&profile)),
        })
    };
    let total = selected().count();
    kprintln!("BUSMASTER-TEST begin profile={profile} total={total} skip={skip}");
    let (mut passed, mut failed) = (0usize, 0usize);
    for test in selected().skip(skip) {
        kprintln!("BUSMASTER-TEST start {}", test.name);
        set_current(Some(test.name));
        let t0 = time::rdtsc();
        let result = (test.run)();
        let us = time::ticks_to_ns(time::rdtsc() - t0) / 1000;
        set_current(None);
        match result {
            Ok(()) => {
                passed += 1;
                kprintln!("BUSMASTER-TEST ok {} {us}us", test.name);
            }
            Err(msg) => {
                failed += 1;
                kprintln!("BUSMASTER-TEST fail {}: {msg}", test.name);
            }
        }
    }
    kprintln!("BUSMASTER-TEST end passed={passed} failed={failed}");
    exit_qemu(if failed == 0 {
        QemuExit::Success
    } else {
        QemuExit::TestsFailed
    })
}
