//! `fbcon`: the pure logic of Busmaster's screen-and-keyboard console, kept
//! apart from the hardware so the host can test it.
//!
//! * [`pixel`] — framebuffer geometry (width, height, stride, bytes per pixel)
//!   and pixel formats (RGB, BGR, grey, bit positions), with validation.
//! * [`term`] — a text grid with a cursor, scrolling and a VT100 subset
//!   (cursor moves, erase in line/display, colours), fed byte by byte.
//! * [`Console`] — the grid drawn into a byte buffer with a bitmap font; only
//!   cells that changed since the last [`Console::flush`] are redrawn, and the
//!   framebuffer is never read back (reads of video memory are slow).
//! * [`keyboard`] — PS/2 scancode set 1 to the bytes a serial terminal sends
//!   (ASCII, control characters, `ESC [ A` for the arrow keys).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod keyboard;
pub mod pixel;
pub mod term;

mod render;

pub use pixel::{Geometry, GeometryError, PixelFormat, Rgb};
pub use render::{Console, CELL_HEIGHT, CELL_WIDTH, PALETTE};
pub use term::{Cell, Terminal};
