//! `fbinfo`: the consoles — framebuffer and its text grid, keyboard, serial port.

use super::{CmdResult, Command};
use crate::drivers::i8042;
use crate::drivers::{fbcon as screen, serial};
use crate::kprintln;

pub fn fbinfo(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    match screen::info() {
        None => kprintln!(
            "framebuffer: none (no framebuffer from the bootloader, or unusable; see dmesg)"
        ),
        Some(i) => {
            let g = i.geometry;
            kprintln!(
                "framebuffer: {}x{}, stride {} pixels, {} bytes/pixel, format {:?}",
                g.width,
                g.height,
                g.stride,
                g.bytes_per_pixel,
                g.format
            );
            match i.phys {
                Some(p) => kprintln!(
                    "  memory: phys {p:#x}, {} KiB, mapped at {:#x} ({})",
                    i.byte_len / 1024,
                    i.virt,
                    i.cache.map_or("cache type unknown", |c| c.name())
                ),
                None => kprintln!("  memory: {} KiB at {:#x}", i.byte_len / 1024, i.virt),
            }
            kprintln!(
                "console: {}x{} cells of {}x{} pixels (Noto Sans Mono); {} lines scrolled, {} cells drawn in {} flushes, {} ms drawing",
                i.cols,
                i.rows,
                fbcon::CELL_WIDTH,
                fbcon::CELL_HEIGHT,
                i.scrolled,
                i.cells_drawn,
                i.flushes,
                i.draw_ns / 1_000_000
            );
        }
    }
    let k = i8042::stats();
    if k.present {
        kprintln!(
            "keyboard: PS/2 through the i8042, {}; {} scancodes, {} bytes dropped, caps lock {}",
            match k.vector {
                Some(v) => alloc::format!("IRQ 1 at vector {v:#04x}"),
                None => "polled".into(),
            },
            k.scancodes,
            k.dropped,
            if k.caps_lock { "on" } else { "off" }
        );
    } else {
        kprintln!("keyboard: none (no i8042)");
    }
    kprintln!(
        "serial: COM1 (0x3f8) {}",
        match (serial::present(), serial::rx_interrupt_enabled()) {
            (false, _) => "absent",
            (true, true) => "present, receive interrupt on",
            (true, false) => "present, polled",
        }
    );
    Ok(())
}
