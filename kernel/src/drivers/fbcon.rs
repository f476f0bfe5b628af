//! The framebuffer console: the bootloader's linear framebuffer (VESA under
//! BIOS, GOP under UEFI) as a text screen, so the log and the shell can be
//! read on a machine without a serial port. The drawing logic is the
//! host-tested `fbcon` crate; this module owns the memory and decides when
//! to draw.
//!
//! The framebuffer is remapped write-combining when possible: the
//! bootloader maps it write-back, which on real hardware the MTRRs usually
//! turn into uncached (every pixel a bus write). Nothing is ever read back.
//!
//! Output is drawn at the end of each write, except that after a scroll the
//! redraw (most of the screen) is held back, so a burst of lines costs one
//! redraw, not one per line. The hold-back window is ten times what the last
//! scrolled redraw took, between [`BATCH_MIN_NS`] and [`BATCH_MAX_NS`]: on
//! real hardware a redraw takes about a millisecond and the screen follows
//! smoothly; under QEMU's emulation it takes ~15 ms and drawing then costs at
//! most about a tenth of the time spent printing. The input path calls
//! [`flush_pending`] when idle, which draws what was held back.

use alloc::string::String;

use bootloader_api::info::{FrameBuffer, PixelFormat as BootFormat};
use fbcon::{Console, Geometry, PixelFormat};
use mm::pat::CacheType;

use crate::console::ConsoleDriver;
use crate::mm::{self as kmm, IoMem};
use crate::sync::IrqSpinLock;

/// Bounds of the window a scrolled screen waits for more output in.
const BATCH_MIN_NS: u64 = 20_000_000;
const BATCH_MAX_NS: u64 = 250_000_000;

struct Screen {
    con: Console<&'static mut [u8]>,
    /// The write-combining remap the console draws through (kept alive).
    _wc: Option<IoMem>,
    virt: u64,
    phys: Option<u64>,
    cache: Option<CacheType>,
    byte_len: usize,
    /// Terminal scroll count when the screen was last drawn.
    drawn_at_scroll: u64,
    last_draw_ns: u64,
    /// How long the last scrolled redraw took.
    last_scroll_draw_ns: u64,
    pending: bool,
    cells_drawn: u64,
    flushes: u64,
    /// Time spent drawing, in TSC ticks.
    draw_ticks: u64,
}

static SCREEN: IrqSpinLock<Option<Screen>> = IrqSpinLock::new(None);

/// What `fbinfo` shows.
pub struct Info {
    pub geometry: Geometry,
    pub cols: usize,
    pub rows: usize,
    pub virt: u64,
    pub phys: Option<u64>,
    pub cache: Option<CacheType>,
    pub byte_len: usize,
    pub cells_drawn: u64,
    pub flushes: u64,
    pub draw_ns: u64,
    pub scrolled: u64,
}

fn geometry(fb: &FrameBuffer) -> Geometry {
    let i = fb.info();
    let format = match i.pixel_format {
        BootFormat::Rgb => PixelFormat::Rgb,
        BootFormat::Bgr => PixelFormat::Bgr,
        BootFormat::U8 => PixelFormat::Grey,
        BootFormat::Unknown {
            red_position,
            green_position,
            blue_position,
        } => PixelFormat::Bitmask {
            red: red_position,
            green: green_position,
            blue: blue_position,
        },
        // A format added to bootloader_api later: treat as unusable below.
        _ => PixelFormat::Bitmask {
            red: 0xFF,
            green: 0xFF,
            blue: 0xFF,
        },
    };
    Geometry {
        width: i.width,
        height: i.height,
        stride: i.stride,
        bytes_per_pixel: i.bytes_per_pixel,
        format,
    }
}

/// Takes over the bootloader's framebuffer (if any), clears it and shows the
/// log so far. Needs the heap and the memory manager.
pub fn init(fb: Option<&'static mut FrameBuffer>) {
    let Some(fb) = fb else {
        log::info!("screen: no framebuffer from the bootloader; serial console only");
        return;
    };
    let geo = geometry(fb);
    let byte_len = fb.info().byte_len;
    let virt = fb.buffer().as_ptr() as u64;
    if let Err(e) = geo.check(byte_len) {
        log::warn!("screen: unusable framebuffer ({e}): {geo:?}; serial console only");
        return;
    }
    let phys = kmm::translate(hal::VirtAddr::new(virt)).map(|t| t.phys.as_u64());
    // Prefer a write-combining mapping of the same memory.
    let wc = phys.and_then(|p| kmm::ioremap_wc(p, byte_len as u64).ok());
    let (buf, cache, virt) = match &wc {
        Some(io) => {
            let v = io.virt().as_u64();
            // SAFETY: `io` maps exactly `byte_len` bytes of the framebuffer at
            // `v` and is kept in the Screen for the rest of the kernel's life
            // (never dropped, so never unmapped). From here on only this slice
            // is used to reach the framebuffer; the bootloader's mapping
            // (`fb`) is consumed below and not touched again.
            let s = unsafe { core::slice::from_raw_parts_mut(v as *mut u8, byte_len) };
            (s, Some(CacheType::WriteCombining), v)
        }
        None => {
            let cache = kmm::translate(hal::VirtAddr::new(virt)).map(|t| t.cache);
            (fb.buffer_mut(), cache, virt)
        }
    };
    let con = match Console::new(buf, geo) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("screen: {e}; serial console only");
            return;
        }
    };
    let (cols, rows) = (con.terminal().cols(), con.terminal().rows());
    {
        let mut screen = SCREEN.lock();
        *screen = Some(Screen {
            con,
            _wc: wc,
            virt,
            phys,
            cache,
            byte_len,
            drawn_at_scroll: 0,
            last_draw_ns: 0,
            last_scroll_draw_ns: 0,
            pending: false,
            cells_drawn: 0,
            flushes: 0,
            draw_ticks: 0,
        });
        // The log so far, then draw it all at once.
        crate::console::printk::with_ring(|bytes| {
            if let Some(s) = screen.as_mut() {
                s.con.write(bytes);
            }
        });
    }
    flush_inner(true);
    if let Err(e) = crate::console::register_console(&CONSOLE) {
        log::warn!("screen: not a console ({e})");
    }
    log::info!(
        "screen: {}x{} {:?}, {} bytes/pixel, stride {}: {cols}x{rows} text console{}",
        geo.width,
        geo.height,
        geo.format,
        geo.bytes_per_pixel,
        geo.stride,
        if cache == Some(CacheType::WriteCombining) {
            " (write-combining)"
        } else {
            ""
        }
    );
}

/// Adds output to the screen's text grid (drawn by the next flush).
pub fn write(bytes: &[u8]) {
    if let Some(s) = SCREEN.lock().as_mut() {
        s.con.write(bytes);
    }
}

/// The screen as a console: text goes to the grid, drawn at `flush`.
static CONSOLE: ConsoleDriver = ConsoleDriver {
    write: |s| write(s.as_bytes()),
    flush,
    idle: flush_pending,
    emergency_write,
};

fn flush_inner(force: bool) {
    let mut guard = SCREEN.lock();
    let Some(s) = guard.as_mut() else {
        return;
    };
    let now = crate::arch::tsc::uptime_ns();
    let scrolled = s.con.terminal().scrolled() != s.drawn_at_scroll;
    let window = (s.last_scroll_draw_ns * 10).clamp(BATCH_MIN_NS, BATCH_MAX_NS);
    if scrolled && !force && now.saturating_sub(s.last_draw_ns) < window {
        s.pending = true;
        return;
    }
    let t0 = crate::arch::tsc::rdtsc();
    s.cells_drawn += s.con.flush() as u64;
    // Drain the write-combining buffers, so what was drawn is on the screen
    // now and not whenever the CPU evicts them.
    hal::barrier::wmb();
    let took = crate::arch::tsc::rdtsc().wrapping_sub(t0);
    s.draw_ticks += took;
    s.flushes += 1;
    s.drawn_at_scroll = s.con.terminal().scrolled();
    if scrolled {
        s.last_draw_ns = now;
        s.last_scroll_draw_ns = crate::arch::tsc::ticks_to_ns(took);
    }
    s.pending = false;
}

/// Draws what changed (a scroll may be held back briefly; see the module doc).
pub fn flush() {
    flush_inner(false);
}

/// Draws output that a scroll held back, once its batching window is over.
pub fn flush_pending() {
    let pending = SCREEN.lock().as_ref().is_some_and(|s| s.pending);
    if pending {
        flush_inner(false);
    }
}

/// For the fatal path: writes and draws at once if the screen is not locked
/// (if the code that died held it, the screen is left as it is).
pub fn emergency_write(s: &str) {
    if let Some(mut guard) = SCREEN.try_lock() {
        if let Some(scr) = guard.as_mut() {
            scr.con.write(s.as_bytes());
            scr.con.flush();
            hal::barrier::wmb();
        }
    }
}

pub fn info() -> Option<Info> {
    SCREEN.lock().as_ref().map(|s| Info {
        geometry: s.con.geometry(),
        cols: s.con.terminal().cols(),
        rows: s.con.terminal().rows(),
        virt: s.virt,
        phys: s.phys,
        cache: s.cache,
        byte_len: s.byte_len,
        cells_drawn: s.cells_drawn,
        flushes: s.flushes,
        draw_ns: crate::arch::tsc::ticks_to_ns(s.draw_ticks),
        scrolled: s.con.terminal().scrolled(),
    })
}

/// The text of one visible row (for tests).
pub fn row_text(row: usize) -> Option<String> {
    SCREEN
        .lock()
        .as_ref()
        .map(|s| s.con.terminal().row_text(row))
}
