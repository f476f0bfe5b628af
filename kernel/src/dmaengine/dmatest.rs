//! dmatest, after Linux's `drivers/dma/dmatest.c` (hw-facts §2.11): for each channel,
//! `iterations` memcpy tests with a random length and random source/destination
//! offsets inside `size`-byte buffers filled with dmatest's patterns; after each
//! transfer the whole source must be unchanged, the destination window must hold the
//! source bytes, and every destination byte outside the window (the guard bytes) must
//! be untouched.
//!
//! A channel without MEMCPY that a peripheral driver holds is tested through that
//! peripheral: ISA channel 2 through the floppy, whose sectors are compared with the
//! image the runner generated.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use dma::stream::{Bidirectional, DmaBuf, DmaStream, ToDevice};
use dmaengine::{ChanId, DmaCaps, DmaStatus, EngineError};

use crate::arch::tsc;
use crate::sync::{HookTable, HookTableFull};

const PATTERN_SRC: u8 = 0x80;
const PATTERN_DST: u8 = 0x00;
const PATTERN_COPY: u8 = 0x40;
const PATTERN_OVERWRITE: u8 = 0x20;
const PATTERN_COUNT_MASK: u8 = 0x1f;
const MAX_ERROR_LINES: usize = 32;
const TIMEOUT_MS: u64 = 3000;

/// Why dmatest could not run on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmatestError {
    /// `--corrupt` asked of an engine that cannot be told to flip a byte.
    CorruptNeedsSim(ChanId),
    /// The channel's device is not registered with dmaengine.
    NoDevice(ChanId),
    /// The provider registered no device to map buffers for.
    NoMapDevice(ChanId),
    /// Another client holds the channel.
    InUse {
        /// The channel.
        chan: ChanId,
        /// The client holding it.
        by: &'static str,
    },
    /// Requesting the channel failed.
    Request(ChanId, EngineError),
}

impl fmt::Display for DmatestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmatestError::CorruptNeedsSim(c) => write!(
                f,
                "{c}: --corrupt needs the simulated iDMA64 (only the model can be told to flip a byte)"
            ),
            DmatestError::NoDevice(c) => write!(f, "no DMA device for {c}"),
            DmatestError::NoMapDevice(c) => {
                write!(f, "{c}: the provider has no device to map buffers for")
            }
            DmatestError::InUse { chan, by } => write!(f, "{chan} is in use by {by}"),
            DmatestError::Request(c, e) => write!(f, "{c}: {e}"),
        }
    }
}

/// Why one memcpy test failed before its data could be checked (the text in the
/// quotes of a dmatest result line).
#[derive(Debug, Clone, PartialEq, Eq)]
enum CopyError {
    /// A test buffer could not be allocated.
    Buffer(dma::DmaError),
    /// A test buffer could not be mapped for the device.
    Map,
    /// Preparing, submitting or issuing the copy failed.
    Prep(EngineError),
    /// Waiting for the copy failed: it did not complete in time
    /// ([`EngineError::Timeout`]) or its status could not be read.
    Wait(EngineError),
    /// The copy completed with an error status.
    Status(DmaStatus),
    /// The cookie completed but the callback never ran.
    NoCallback,
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Buffer(e) => write!(f, "buffer: {e}"),
            CopyError::Map => f.write_str("dma mapping error"),
            CopyError::Prep(e) => write!(f, "prep error: {e}"),
            CopyError::Wait(EngineError::Timeout) => f.write_str("test timed out"),
            CopyError::Wait(e) => write!(f, "wait error: {e}"),
            CopyError::Status(s) => write!(f, "completion error status {s:?}"),
            CopyError::NoCallback => f.write_str("completion without callback"),
        }
    }
}

/// A sector device's read failure, with its own error type kept.
pub type SectorError = Box<dyn fmt::Display + Send>;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Tests per channel.
    pub iterations: u32,
    /// Buffer size (the largest transfer).
    pub size: usize,
    /// Corrupt one byte in the engine during the first test (failure demo).
    pub corrupt: bool,
}

/// One channel's outcome.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Channel name.
    pub chan: String,
    /// Tests run.
    pub tests: u32,
    /// Tests that failed.
    pub failures: u32,
    /// Nanoseconds spent in the transfers (fill and verify time excluded).
    pub busy_ns: u64,
    /// Bytes moved.
    pub bytes: u64,
}

impl Summary {
    /// Linux's summary line: `dmatest: <chan>: summary N tests, F failures X iops Y KB/s`.
    pub fn line(&self) -> String {
        let secs_ns = self.busy_ns.max(1);
        let iops_x100 = self.tests as u64 * 100_000_000_000 / secs_ns;
        let kbs = self.bytes * 1_000_000_000 / 1024 / secs_ns;
        format!(
            "dmatest: {}: summary {} tests, {} failures {}.{:02} iops {} KB/s",
            self.chan,
            self.tests,
            self.failures,
            iops_x100 / 100,
            iops_x100 % 100,
            kbs
        )
    }
}

/// xorshift for offsets and lengths (no entropy needed, only variety).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn fill(buf: &mut [u8], base: u8, start: usize, len: usize, mark: u8) {
    for (i, b) in buf.iter_mut().enumerate() {
        let mut v = base | (!(i as u8) & PATTERN_COUNT_MASK);
        if i >= start && i < start + len {
            v |= mark;
        }
        *b = v;
    }
}

/// Compares the buffers after a copy of `len` bytes from `src_off` to `dst_off`;
/// returns the number of wrong bytes and prints up to [`MAX_ERROR_LINES`].
fn verify(
    out: &mut dyn Write,
    thread: &str,
    src: &[u8],
    dst: &[u8],
    src_off: usize,
    dst_off: usize,
    len: usize,
) -> usize {
    let mut errors = 0usize;
    let mut report = |out: &mut dyn Write, what: &str, i: usize, want: u8, got: u8| {
        if errors < MAX_ERROR_LINES {
            let _ = writeln!(
                out,
                "dmatest: {thread}: {what}[{i:#x}] {}! Expected {want:02x}, got {got:02x}",
                match what {
                    "srcbuf" => "overwritten",
                    _ if i >= dst_off && i < dst_off + len => "not copied",
                    _ if got & PATTERN_COPY != 0 => "was copied",
                    _ => "mismatch",
                }
            );
        }
        errors += 1;
    };
    for (i, &got) in src.iter().enumerate() {
        let mut want = PATTERN_SRC | (!(i as u8) & PATTERN_COUNT_MASK);
        if i >= src_off && i < src_off + len {
            want |= PATTERN_COPY;
        }
        if got != want {
            report(out, "srcbuf", i, want, got);
        }
    }
    for (i, &got) in dst.iter().enumerate() {
        let want = if i >= dst_off && i < dst_off + len {
            let s = i - dst_off + src_off;
            PATTERN_SRC | PATTERN_COPY | (!(s as u8) & PATTERN_COUNT_MASK)
        } else {
            PATTERN_DST | (!(i as u8) & PATTERN_COUNT_MASK)
        };
        if got != want {
            report(out, "dstbuf", i, want, got);
        }
    }
    if errors > MAX_ERROR_LINES {
        let _ = writeln!(
            out,
            "dmatest: {thread}: {} errors suppressed",
            errors - MAX_ERROR_LINES
        );
    }
    errors
}

/// Runs memcpy tests on `chan` (already requested by the caller).
pub fn memcpy_tests(
    out: &mut dyn Write,
    chan: ChanId,
    dev: &Arc<dma::DmaDevice>,
    p: &Params,
) -> Summary {
    let thread = format!("{chan}-copy0");
    let mut sum = Summary {
        chan: chan.name(),
        ..Summary::default()
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (chan.dev as u64) << 8 ^ chan.chan as u64);
    let size = p.size.max(1);
    for n in 0..p.iterations {
        sum.tests += 1;
        let len = 1 + rng.below(size);
        let src_off = rng.below(size - len + 1);
        let dst_off = rng.below(size - len + 1);
        let result = one_copy(chan, dev, size, src_off, dst_off, len, p.corrupt && n == 0);
        match result {
            Ok((src, dst, ns)) => {
                sum.busy_ns += ns;
                sum.bytes += len as u64;
                let errs = verify(out, &thread, &src, &dst, src_off, dst_off, len);
                if errs > 0 {
                    sum.failures += 1;
                    let _ = writeln!(
                        out,
                        "dmatest: {thread}: result #{}: 'data error' with src_off={src_off:#x} dst_off={dst_off:#x} len={len:#x} ({errs})",
                        n + 1
                    );
                }
            }
            Err(msg) => {
                sum.failures += 1;
                let _ = writeln!(
                    out,
                    "dmatest: {thread}: result #{}: '{msg}' with src_off={src_off:#x} dst_off={dst_off:#x} len={len:#x} (0)",
                    n + 1
                );
                let _ = super::with(|e| e.terminate_all(chan));
            }
        }
    }
    sum
}

type CopyOutcome = Result<(Vec<u8>, Vec<u8>, u64), CopyError>;

fn one_copy(
    chan: ChanId,
    dev: &Arc<dma::DmaDevice>,
    size: usize,
    src_off: usize,
    dst_off: usize,
    len: usize,
    corrupt: bool,
) -> CopyOutcome {
    let platform = &crate::dma::PLATFORM;
    let mut src = DmaBuf::alloc(platform, size).map_err(CopyError::Buffer)?;
    let mut dst = DmaBuf::alloc(platform, size).map_err(CopyError::Buffer)?;
    let mut s = vec![0u8; size];
    let mut d = vec![0u8; size];
    fill(&mut s, PATTERN_SRC, src_off, len, PATTERN_COPY);
    fill(&mut d, PATTERN_DST, dst_off, len, PATTERN_OVERWRITE);
    src.write(0, &s);
    dst.write(0, &d);
    let src = DmaStream::<ToDevice>::map(dev, src).map_err(|_| CopyError::Map)?;
    let dst = DmaStream::<Bidirectional>::map(dev, dst).map_err(|_| CopyError::Map)?;
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    if corrupt {
        corrupt_engine(chan);
    }
    let t0 = tsc::rdtsc();
    let cookie = super::with(|e| {
        let mut desc = e.prep_memcpy(
            chan,
            hal::DmaAddr::new(dst.dma_addr().as_u64() + dst_off as u64),
            hal::DmaAddr::new(src.dma_addr().as_u64() + src_off as u64),
            len,
        )?;
        desc.set_callback(move |_, _| flag.store(true, Ordering::Release));
        let c = e.submit(desc)?;
        e.issue_pending(chan)?;
        Ok::<_, dmaengine::EngineError>(c)
    })
    .map_err(CopyError::Prep)?;
    let st = super::wait(chan, cookie, TIMEOUT_MS).map_err(CopyError::Wait)?;
    let ns = tsc::ticks_to_ns(tsc::rdtsc() - t0);
    if st.status != DmaStatus::Complete {
        return Err(CopyError::Status(st.status));
    }
    if !done.load(Ordering::Acquire) {
        return Err(CopyError::NoCallback);
    }
    Ok((src.unmap().to_vec(), dst.unmap().to_vec(), ns))
}

/// Arms the failure demo: the simulated engine flips the next byte it copies. (Only
/// the model can be told to misbehave; `run_channel` refuses `--corrupt` elsewhere.)
fn corrupt_engine(chan: ChanId) {
    if let Some(arm) = super::dev_info(chan.dev).and_then(|i| i.fault_injection.get().copied()) {
        arm();
    }
}

/// Whether `chan`'s engine can be told to corrupt a copy (the simulated iDMA64).
fn is_simulated(chan: ChanId) -> bool {
    super::dev_info(chan.dev).is_some_and(|i| i.fault_injection.get().is_some())
}

/// A peripheral through which a channel without MEMCPY is tested (the floppy on ISA
/// channel 2): dmatest reads runs of sectors and compares them with the image the
/// runner generated ([`floppy_sector`]). The driver registers it.
pub struct SectorDevice {
    /// Names the test thread (`dma0chan2-floppy0`).
    pub name: &'static str,
    /// The channel the device holds, if it is up.
    pub channel: fn() -> Option<ChanId>,
    pub sectors: u32,
    /// Reads `count` sectors from `lba`, appending them to the vector.
    pub read: fn(u32, u32, &mut Vec<u8>) -> Result<(), SectorError>,
}

static SECTOR_DEVICES: HookTable<&'static SectorDevice, 2> = HookTable::new();

/// Adds a peripheral dmatest tests its channel through.
pub fn register_sector_device(d: &'static SectorDevice) -> Result<(), HookTableFull> {
    SECTOR_DEVICES.register(d)
}

/// The registered peripheral holding `chan`, if any.
fn sector_device(chan: ChanId) -> Option<&'static SectorDevice> {
    let mut found = None;
    SECTOR_DEVICES.for_each(|d| {
        if found.is_none() && (d.channel)() == Some(chan) {
            found = Some(d);
        }
    });
    found
}

/// The image the runner generates for the floppy profile (boot/src/profile.rs,
/// `floppy_sector`): a label with the LBA, then a pattern of the LBA and offset.
pub fn floppy_sector(lba: u32) -> Vec<u8> {
    let label = format!("BUSMASTER FLOPPY LBA {lba:05}\n");
    (0..512usize)
        .map(|i| {
            if i < label.len() {
                label.as_bytes()[i]
            } else {
                ((lba as usize * 7 + i * 13) ^ (i >> 4)) as u8
            }
        })
        .collect()
}

/// Tests a channel through the peripheral that holds it (ISA channel 2 through the
/// floppy): random runs of sectors, compared with the image.
pub fn sector_tests(out: &mut dyn Write, chan: ChanId, dev: &SectorDevice, p: &Params) -> Summary {
    let thread = format!("{chan}-{}", dev.name);
    let mut sum = Summary {
        chan: chan.name(),
        ..Summary::default()
    };
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    for n in 0..p.iterations {
        sum.tests += 1;
        let count = 1 + rng.below(4) as u32;
        let lba = rng.below((dev.sectors - count) as usize) as u32;
        let mut data = Vec::new();
        let t0 = tsc::rdtsc();
        let r = (dev.read)(lba, count, &mut data);
        sum.busy_ns += tsc::ticks_to_ns(tsc::rdtsc() - t0);
        match r {
            Ok(_) => {
                sum.bytes += data.len() as u64;
                let bad = (0..count)
                    .filter(|i| {
                        data[*i as usize * 512..(*i as usize + 1) * 512]
                            != floppy_sector(lba + i)[..]
                    })
                    .count();
                if bad > 0 {
                    sum.failures += 1;
                    let _ = writeln!(
                        out,
                        "dmatest: {thread}: result #{}: 'data error' with lba={lba} count={count} ({bad} sectors differ from the image)",
                        n + 1
                    );
                }
            }
            Err(e) => {
                sum.failures += 1;
                let _ = writeln!(
                    out,
                    "dmatest: {thread}: result #{}: '{e}' with lba={lba} count={count} (0)",
                    n + 1
                );
            }
        }
    }
    sum
}

/// The channels `dmatest` with no channel argument runs on: every free MEMCPY channel,
/// plus the floppy's ISA channel when there is a drive.
pub fn default_channels() -> Vec<ChanId> {
    let mut v: Vec<ChanId> = super::with(|e| {
        e.channels()
            .into_iter()
            .filter(|(c, used)| {
                !used
                    && e.provider(c.dev)
                        .is_ok_and(|p| p.caps().contains(DmaCaps::MEMCPY))
            })
            .map(|(c, _)| c)
            .collect()
    });
    SECTOR_DEVICES.for_each(|d| v.extend((d.channel)()));
    v
}

/// Runs dmatest on one channel: memcpy when it can, through the floppy for ISA
/// channel 2. Requests and releases the channel itself.
pub fn run_channel(out: &mut dyn Write, chan: ChanId, p: &Params) -> Result<Summary, DmatestError> {
    if p.corrupt && !is_simulated(chan) {
        return Err(DmatestError::CorruptNeedsSim(chan));
    }
    if let Some(d) = sector_device(chan) {
        return Ok(sector_tests(out, chan, d, p));
    }
    let info = super::dev_info(chan.dev).ok_or(DmatestError::NoDevice(chan))?;
    let dev = info.dma().ok_or(DmatestError::NoMapDevice(chan))?;
    let got = super::request("dmatest", DmaCaps::MEMCPY, |c| c == chan).map_err(|e| {
        match super::client_of(chan) {
            Some(by) => DmatestError::InUse { chan, by },
            None => DmatestError::Request(chan, e),
        }
    })?;
    let mut p = *p;
    // An engine may move less per transfer than dmatest's buffer (edu: one 4 KiB
    // buffer per device transfer, ~100 ms each).
    let max = info.max_len.load(Ordering::Acquire);
    if max != 0 {
        p.size = p.size.min(max);
    }
    let s = memcpy_tests(out, got, &dev, &p);
    let _ = super::release(got);
    Ok(s)
}
