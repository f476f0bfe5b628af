//! `attack`: edu plays a malicious device against the IOMMU (issue #15's bench).
//!
//! Each attack drives edu's DMA engine with addresses no driver would give it,
//! and reports what the device tried, what it got (bytes read or changed, an
//! interrupt delivered) and what the kernel saw (decoded fault records). The
//! outcome depends on the boot's mode: `iommu=off`, `iommu=pt`, strict or lazy
//! translation (`iommu.strict=0`). `attack matrix` runs them all and prints one
//! table; the suite boots each mode and checks every cell.
//!
//! Nothing here can crash the kernel: the targets are pages the attack itself
//! owns (a canary, a page with a secret, a buffer it keeps after unmapping),
//! never memory something else uses, and a fault storm is rate-limited by the
//! IOMMU layer.

use alloc::string::String;
use alloc::vec::Vec;

use dma::{Bidirectional, DmaBuf, DmaStream, ToDevice};
use hal::DmaAddr;

use super::{CmdError, CmdResult, Command};
use crate::arch::tsc;
use crate::dma as kdma;
use crate::drivers::edu::{self, Edu, EduDir};
use crate::iommu::{self, Mode};
use crate::kprintln;

mod msi_inject;
use msi_inject::msi_inject;

fn fail(msg: impl core::fmt::Display) -> CmdError {
    CmdError::Failed(alloc::format!("attack: {msg}"))
}

/// What happened to one attack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The device got what it wanted.
    Allowed,
    /// The IOMMU stopped it.
    Blocked,
    /// This machine or boot cannot run it (why).
    NotAvailable(String),
}

pub struct Outcome {
    pub verdict: Verdict,
    /// Bytes the device read that it should not have, or changed.
    pub bytes: usize,
    /// Fault records the attack caused (decoded).
    pub faults: Vec<String>,
    /// What the device tried and what it got, in words.
    pub lines: Vec<String>,
}

impl Outcome {
    fn unavailable(why: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::NotAvailable(why.into()),
            bytes: 0,
            faults: Vec::new(),
            lines: Vec::new(),
        }
    }
}

/// Why an attack could not be run to its end (distinct from "blocked": these
/// are failures of the bench itself).
#[derive(Debug)]
pub enum AttackError {
    /// A buffer or a legitimate mapping the attack needs could not be had.
    Dma(dma::DmaError),
    /// edu refused a transfer (its length or address checks).
    Device(::edu::EduError),
    /// No interrupt vector was free to aim the injected MSI at.
    NoVector(&'static str),
    /// The canary page's physical address is also one of edu's live IOVAs,
    /// so a write there would not show what an unmapped address does.
    CanaryIsLiveIova(u64),
}

impl core::fmt::Display for AttackError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttackError::Dma(e) => write!(f, "{e}"),
            AttackError::Device(e) => write!(f, "{e}"),
            AttackError::NoVector(e) => f.write_str(e),
            AttackError::CanaryIsLiveIova(pa) => write!(
                f,
                "the canary's address {pa:#x} happens to be a live IOVA of edu; try again"
            ),
        }
    }
}

impl From<::edu::EduError> for AttackError {
    fn from(e: ::edu::EduError) -> Self {
        AttackError::Device(e)
    }
}

impl From<dma::DmaError> for AttackError {
    fn from(e: dma::DmaError) -> Self {
        AttackError::Dma(e)
    }
}

impl From<dma::MapError> for AttackError {
    fn from(m: dma::MapError) -> Self {
        AttackError::Dma(m.error)
    }
}

struct Attack {
    name: &'static str,
    summary: &'static str,
    run: fn(&Edu) -> Result<Outcome, AttackError>,
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: "kernel-write",
        summary: "the device writes a kernel page (a canary) that was never mapped for it",
        run: kernel_write,
    },
    Attack {
        name: "sub-page",
        summary: "a driver maps a 64-byte buffer; the device reads the rest of its page, where a secret lives",
        run: sub_page,
    },
    Attack {
        name: "stale-iotlb",
        summary: "the device keeps writing through a mapping after the driver unmapped it",
        run: stale_iotlb,
    },
    Attack {
        name: "msi-inject",
        summary: "the device DMA-writes into the interrupt range (0xFEE0_0000) to raise a vector it picks",
        run: msi_inject,
    },
    Attack {
        name: "ats",
        summary: "the device claims a translation is already done (PCIe ATS): not emulated by QEMU 7.2",
        run: ats,
    },
];

/// This boot's mode, as the matrix names it.
pub fn mode_name() -> &'static str {
    match iommu::get() {
        Some(io) if !io.units.is_empty() => match io.mode {
            Mode::Off => "off",
            Mode::PassThrough => "pt",
            Mode::Translate if io.strict => "strict",
            Mode::Translate => "lazy",
        },
        _ => "off",
    }
}

/// Faults recorded since `before`, decoded.
fn faults_since(before: u64) -> Vec<String> {
    iommu::collect_faults();
    let n = (iommu::fault_count() - before) as usize;
    let h = iommu::fault_history();
    h[h.len().saturating_sub(n)..].to_vec()
}

/// A page-sized buffer edu can reach (below its 28-bit mask), filled with `byte`.
fn reachable_page(byte: u8) -> Result<DmaBuf, AttackError> {
    let mut b = DmaBuf::alloc_below(&kdma::PLATFORM, 4096, dma::dma_bit_mask(28))?;
    b.fill(byte);
    Ok(b)
}

/// Loads edu's internal buffer with `data` through a legitimate mapping.
fn load_device(e: &Edu, data: &[u8]) -> Result<(), AttackError> {
    let mut b = reachable_page(0)?;
    b.write(0, data);
    let s = DmaStream::<ToDevice>::map(&e.dma, b)?;
    let r = e.to_device(&s, data.len());
    drop(s.unmap());
    r.map_err(AttackError::Device)
}

fn kernel_write(e: &Edu) -> Result<Outcome, AttackError> {
    let canary = reachable_page(0xC3)?;
    let pa = canary.phys().as_u64();
    if iommu::domain_of(e.bdf).is_some() && iommu::translate(e.bdf, pa).is_ok() {
        return Err(AttackError::CanaryIsLiveIova(pa));
    }
    load_device(e, &[0xEE; 64])?;
    let before = iommu::fault_count();
    // SAFETY: the attack under study: a physical address no mapping covers.
    unsafe { e.transfer_raw(EduDir::FromDevice, DmaAddr::new(pa), 64) }?;
    let faults = faults_since(before);
    let changed = canary.to_vec().iter().filter(|&&b| b != 0xC3).count();
    Ok(Outcome {
        verdict: if changed > 0 {
            Verdict::Allowed
        } else {
            Verdict::Blocked
        },
        bytes: changed,
        lines: alloc::vec![
            alloc::format!(
                "tried: write 64 bytes at bus address {pa:#x}, the canary page's physical address"
            ),
            alloc::format!("got: {changed} canary byte(s) changed"),
        ],
        faults,
    })
}

/// The secret's offset in the page and its bytes.
const SECRET_AT: usize = 2048;
const SECRET: &[u8; 16] = b"top-secret-key!!";

fn sub_page(e: &Edu) -> Result<Outcome, AttackError> {
    // One page: a 64-byte buffer the driver maps at its start, and a secret
    // the kernel keeps further down the same page (written by the CPU, never
    // mapped for anyone).
    let mut page = reachable_page(0)?;
    page.write(SECRET_AT, SECRET);
    let pa = page.phys().as_u64();
    // SAFETY: `page` is an owned DMA page, kept (and not freed) until after the unmap
    // below; the device is meant to see its first 64 bytes.
    let bus = unsafe {
        e.dma
            .map_single(page.phys(), 64, dma::DmaDirection::ToDevice)
    }?;
    // The device reads past its 64 bytes: the whole page up to the secret's end.
    let base = bus.as_u64() & !0xFFF;
    let len = SECRET_AT + SECRET.len();
    let before = iommu::fault_count();
    // SAFETY: the attack under study: a read past the 64 mapped bytes.
    let r = unsafe { e.transfer_raw(EduDir::ToDevice, DmaAddr::new(base), len) };
    let faults = faults_since(before);
    let unmapped = e.dma.unmap_single(bus, 64, dma::DmaDirection::ToDevice);
    r.map_err(AttackError::Device)?;
    unmapped?;
    // What the device now holds, written back through a legitimate mapping.
    let out = reachable_page(0)?;
    let s = DmaStream::<dma::FromDevice>::map(&e.dma, out)?;
    e.from_device(&s, len)?;
    let got = s.unmap().to_vec();
    let leaked = got[SECRET_AT..len]
        .iter()
        .zip(SECRET.iter())
        .filter(|(a, b)| a == b)
        .count();
    let bounced = bus.as_u64() & 0xFFF != pa & 0xFFF || leaked == 0 && faults.is_empty();
    Ok(Outcome {
        verdict: if leaked == SECRET.len() {
            Verdict::Allowed
        } else {
            Verdict::Blocked
        },
        bytes: leaked,
        lines: alloc::vec![
            alloc::format!(
                "tried: the driver mapped 64 bytes at phys {pa:#x} (bus {:#x}); the device read {len} bytes from bus {base:#x}",
                bus.as_u64()
            ),
            alloc::format!(
                "got: {leaked} of the secret's {} bytes at page offset {SECRET_AT:#x}{}",
                SECRET.len(),
                if e.dma.is_untrusted() {
                    " (untrusted: the device saw a bounce page, its 64 bytes then zeros)"
                } else if bounced {
                    " (the buffer was not where the device looked)"
                } else {
                    ""
                }
            ),
        ],
        faults,
    })
}

/// How long lazy mode may leave a window open before the attack gives up
/// waiting for it to close (attempts of ~100 ms each).
const STALE_ATTEMPTS: usize = 100;

fn stale_iotlb(e: &Edu) -> Result<Outcome, AttackError> {
    let translated = iommu::domain_of(e.bdf).is_some();
    // Earlier unmaps waiting in a lazy flush queue would close the window
    // early (the queue flushes when its oldest entry is due): start empty.
    iommu::flush_lazy_queues();
    let buf = reachable_page(0xAB)?;
    let s = DmaStream::<Bidirectional>::map(&e.dma, buf)?;
    let bus = s.dma_addr();
    // The device uses the mapping (the unit caches the translation) ...
    e.to_device(&s, 64)?;
    // ... the driver is done with it ...
    let mut buf = s.unmap();
    let hz = tsc::tsc_hz().max(1);
    let t0 = tsc::rdtsc();
    let ms = |t: u64| (t - t0) * 1000 / hz;
    // ... and the device writes through the old bus address until it is stopped.
    let attempts = if translated { STALE_ATTEMPTS } else { 3 };
    let before = iommu::fault_count();
    let (mut ok, mut last_ok_ms, mut closed_ms) = (0usize, None, None);
    for _ in 0..attempts {
        buf.fill(0x11);
        let f = iommu::fault_count();
        // SAFETY: the attack under study: a stale bus address after unmap.
        unsafe { e.transfer_raw(EduDir::FromDevice, bus, 64) }?;
        iommu::collect_faults();
        let changed = buf.to_vec()[..64].iter().any(|&b| b != 0x11);
        if changed {
            ok += 1;
            last_ok_ms = Some(ms(tsc::rdtsc()));
        }
        if !changed || iommu::fault_count() > f {
            closed_ms = Some(ms(tsc::rdtsc()));
            break;
        }
    }
    // Whatever the outcome, the window closes now.
    iommu::flush_lazy_queues();
    let faults = faults_since(before);
    let mut lines = alloc::vec![alloc::format!(
        "tried: the device read 64 bytes at bus {:#x}, the driver unmapped it, the device wrote there again ({} attempt(s) at most)",
        bus.as_u64(),
        attempts
    )];
    lines.push(match (translated, closed_ms) {
        (false, _) => alloc::format!(
            "got: {ok} stale write(s) succeeded: without translation the bus address is the physical address, valid for ever"
        ),
        (true, Some(c)) => match last_ok_ms {
            Some(open) => alloc::format!(
                "got: {ok} stale write(s) succeeded; the window was still open {open} ms after the unmap and closed by {c} ms"
            ),
            None => alloc::format!(
                "got: no stale write succeeded; the first attempt, {c} ms after the unmap, faulted"
            ),
        },
        (true, None) => alloc::format!(
            "got: {ok} stale write(s) succeeded; still open after {attempts} attempts (closed by the flush that followed)"
        ),
    });
    Ok(Outcome {
        verdict: if ok > 0 {
            Verdict::Allowed
        } else {
            Verdict::Blocked
        },
        bytes: ok * 64,
        faults,
        lines,
    })
}

fn ats(_e: &Edu) -> Result<Outcome, AttackError> {
    Ok(Outcome::unavailable(
        "no emulated device issues ATS translation requests in QEMU 7.2: a device with ATS asks the IOMMU for a translation once, caches it, and sends 'already translated' requests the IOMMU passes unchecked, so a lying device reaches any address; Linux never enables ATS for untrusted devices (5.8)",
    ))
}

fn find(name: &str) -> Option<&'static Attack> {
    ATTACKS.iter().find(|a| a.name == name)
}

fn with_target<R>(device: Option<pci::Bdf>, f: impl FnOnce(&Edu) -> R) -> Result<R, CmdError> {
    for i in 0.. {
        let Some(bdf) = edu::with_edu_at(i, |e| e.bdf) else {
            break;
        };
        if device.is_none_or(|d| d == bdf) {
            return edu::with_edu_at(i, f).ok_or_else(|| fail("edu went away"));
        }
    }
    Err(match device {
        Some(d) => fail(alloc::format!("no edu bound at {d} (the attacks need edu as the device)")),
        None => fail("no edu device: the attacks use QEMU's edu as the malicious device (boot a profile with -device edu)"),
    })
}

fn verdict_word(v: &Verdict) -> &str {
    match v {
        Verdict::Allowed => "ALLOWED",
        Verdict::Blocked => "blocked",
        Verdict::NotAvailable(_) => "n/a",
    }
}

fn print_one(a: &Attack, o: &Outcome) {
    kprintln!(
        "attack {} ({}): {}",
        a.name,
        mode_name(),
        verdict_word(&o.verdict)
    );
    for l in &o.lines {
        kprintln!("  {l}");
    }
    if let Verdict::NotAvailable(why) = &o.verdict {
        kprintln!("  not run: {why}");
    }
    kprintln!("  kernel saw: {} fault(s)", o.faults.len());
    for f in &o.faults {
        kprintln!("    {f}");
    }
}

pub fn attack(cmd: &Command, args: &[&str]) -> CmdResult {
    let parse_dev = |s: &str| -> Result<pci::Bdf, CmdError> {
        s.parse()
            .map_err(|_| cmd.bad_arg(alloc::format!("bad device address '{s}' (bb:dd.f)")))
    };
    let (what, device) = match args {
        [] | ["list"] => {
            for a in ATTACKS {
                kprintln!("{:<13} {}", a.name, a.summary);
            }
            return Ok(());
        }
        [w] => (*w, None),
        [w, "--device", d] => (*w, Some(parse_dev(d)?)),
        _ => return Err(cmd.usage_error()),
    };
    if what == "matrix" {
        return matrix(device);
    }
    let a = find(what).ok_or_else(|| {
        let names: Vec<&str> = ATTACKS.iter().map(|a| a.name).collect();
        fail(alloc::format!(
            "unknown attack '{what}' (known: {}, matrix)",
            names.join(", ")
        ))
    })?;
    let o = with_target(device, |e| (a.run)(e))?.map_err(fail)?;
    print_one(a, &o);
    Ok(())
}

fn matrix(device: Option<pci::Bdf>) -> CmdResult {
    let untrusted = with_target(device, |e| e.dma.is_untrusted())?;
    let mode = if untrusted {
        alloc::format!("{}+untrusted", mode_name())
    } else {
        String::from(mode_name())
    };
    let mut rows = Vec::new();
    for a in ATTACKS {
        let o = with_target(device, |e| (a.run)(e))?.map_err(fail)?;
        print_one(a, &o);
        rows.push((a.name, o));
    }
    kprintln!("attack matrix (mode {mode}; edu as the device)");
    kprintln!(
        "interrupt remapping {}",
        if crate::arch::irq_remap::enabled() {
            "on (intremap=on): device MSIs name IRTEs"
        } else {
            "off: MSIs in compatibility format"
        }
    );
    if mode_name() == "off" {
        kprintln!("no IOMMU translates edu's DMA (iommu=off, or no VT-d in this machine): its bus addresses are physical addresses");
    }
    kprintln!(
        "{:<13} {:<16} {:>7} {:>7}",
        "attack",
        mode,
        "bytes",
        "faults"
    );
    for (name, o) in &rows {
        kprintln!(
            "{:<13} {:<16} {:>7} {:>7}",
            name,
            verdict_word(&o.verdict),
            o.bytes,
            o.faults.len()
        );
    }
    Ok(())
}
