//! The text grid drawn into a framebuffer with a bitmap font.

use alloc::vec;
use alloc::vec::Vec;

use noto_sans_mono_bitmap::{get_raster, get_raster_width, FontWeight, RasterHeight};

use crate::pixel::{Geometry, GeometryError, Rgb};
use crate::term::{Cell, Terminal, DEFAULT_BG};

const WEIGHT: FontWeight = FontWeight::Regular;
const SIZE: RasterHeight = RasterHeight::Size16;
/// Pixels per character cell (Noto Sans Mono, 16 px raster: 9 x 16).
pub const CELL_WIDTH: usize = get_raster_width(WEIGHT, SIZE);
pub const CELL_HEIGHT: usize = SIZE.val();

/// The 16 colours of the SGR codes 30–37 and 90–97 (the VGA text palette).
pub const PALETTE: [Rgb; 16] = [
    Rgb(0x00, 0x00, 0x00),
    Rgb(0xAA, 0x00, 0x00),
    Rgb(0x00, 0xAA, 0x00),
    Rgb(0xAA, 0x55, 0x00),
    Rgb(0x00, 0x00, 0xAA),
    Rgb(0xAA, 0x00, 0xAA),
    Rgb(0x00, 0xAA, 0xAA),
    Rgb(0xAA, 0xAA, 0xAA),
    Rgb(0x55, 0x55, 0x55),
    Rgb(0xFF, 0x55, 0x55),
    Rgb(0x55, 0xFF, 0x55),
    Rgb(0xFF, 0xFF, 0x55),
    Rgb(0x55, 0x55, 0xFF),
    Rgb(0xFF, 0x55, 0xFF),
    Rgb(0x55, 0xFF, 0xFF),
    Rgb(0xFF, 0xFF, 0xFF),
];

/// A [`Terminal`] shown on a framebuffer `B` (video memory in the kernel, a
/// `Vec<u8>` in tests). Writes only change the grid; [`flush`](Self::flush)
/// draws the cells that differ from what the screen shows.
pub struct Console<B> {
    buf: B,
    geo: Geometry,
    term: Terminal,
    /// What each cell on the screen shows now (the cursor drawn inverted).
    shown: Vec<Cell>,
    /// Pixel bytes for 16 coverage levels of the last (fg, bg) pair drawn.
    levels: [[u8; 4]; 16],
    levels_for: Option<(u8, u8)>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Console<B> {
    /// Checks the geometry against the buffer, clears the screen and starts
    /// with an empty grid of as many whole cells as fit.
    pub fn new(buf: B, geo: Geometry) -> Result<Self, GeometryError> {
        geo.check(buf.as_ref().len())?;
        let (cols, rows) = (geo.width / CELL_WIDTH, geo.height / CELL_HEIGHT);
        if cols == 0 || rows == 0 {
            return Err(GeometryError::TooSmallForText);
        }
        let mut c = Console {
            buf,
            geo,
            term: Terminal::new(cols, rows),
            shown: vec![Cell::blank(DEFAULT_BG); cols * rows],
            levels: [[0; 4]; 16],
            levels_for: None,
        };
        let bg = c.geo.encode(PALETTE[DEFAULT_BG as usize]);
        c.fill(0, 0, geo.width, geo.height, bg);
        Ok(c)
    }

    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    pub fn terminal(&self) -> &Terminal {
        &self.term
    }

    pub fn buffer(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Feeds output bytes to the grid; nothing is drawn until `flush`.
    pub fn write(&mut self, bytes: &[u8]) {
        self.term.write(bytes);
    }

    /// Draws every cell whose content, colours or cursor state changed since
    /// the last flush; returns how many were drawn.
    pub fn flush(&mut self) -> usize {
        let (cols, rows) = (self.term.cols(), self.term.rows());
        let cursor = self.term.cursor();
        let mut drawn = 0;
        for row in 0..rows {
            for col in 0..cols {
                let mut want = self.term.cell(col, row);
                if cursor == Some((col, row)) {
                    core::mem::swap(&mut want.fg, &mut want.bg);
                }
                let i = row * cols + col;
                if self.shown[i] != want {
                    self.draw_cell(col, row, want);
                    self.shown[i] = want;
                    drawn += 1;
                }
            }
        }
        drawn
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, px: [u8; 4]) {
        let (stride, bpp) = (self.geo.stride, self.geo.bytes_per_pixel);
        let buf = self.buf.as_mut();
        for line in y..y + h {
            let start = (line * stride + x) * bpp;
            let dst = &mut buf[start..start + w * bpp];
            match bpp {
                4 => fill_row::<4>(dst, px),
                3 => fill_row::<3>(dst, px),
                2 => fill_row::<2>(dst, px),
                _ => fill_row::<1>(dst, px),
            }
        }
    }

    fn draw_cell(&mut self, col: usize, row: usize, cell: Cell) {
        let (x, y) = (col * CELL_WIDTH, row * CELL_HEIGHT);
        let fg = PALETTE[(cell.fg & 15) as usize];
        let bg = PALETTE[(cell.bg & 15) as usize];
        if cell.ch == b' ' {
            let px = self.geo.encode(bg);
            self.fill(x, y, CELL_WIDTH, CELL_HEIGHT, px);
            return;
        }
        let glyph = get_raster(cell.ch as char, WEIGHT, SIZE)
            .or_else(|| get_raster('?', WEIGHT, SIZE))
            .map(|g| g.raster());
        let Some(glyph) = glyph else {
            return;
        };
        if self.levels_for != Some((cell.fg, cell.bg)) {
            for (i, l) in self.levels.iter_mut().enumerate() {
                *l = self.geo.encode(fg.blend(bg, (i * 17) as u8));
            }
            self.levels_for = Some((cell.fg, cell.bg));
        }
        let (stride, bpp) = (self.geo.stride, self.geo.bytes_per_pixel);
        let levels = &self.levels;
        let buf = self.buf.as_mut();
        for (gy, coverage) in glyph.iter().enumerate().take(CELL_HEIGHT) {
            let start = ((y + gy) * stride + x) * bpp;
            let dst = &mut buf[start..start + CELL_WIDTH * bpp];
            match bpp {
                4 => glyph_row::<4>(dst, coverage, levels),
                3 => glyph_row::<3>(dst, coverage, levels),
                2 => glyph_row::<2>(dst, coverage, levels),
                _ => glyph_row::<1>(dst, coverage, levels),
            }
        }
    }
}

/// Const-sized pixel copies, so the compiler emits plain stores rather than
/// a `memcpy` call per pixel (which is slow under emulation).
fn fill_row<const N: usize>(dst: &mut [u8], px: [u8; 4]) {
    let px: [u8; N] = core::array::from_fn(|i| px[i]);
    for d in dst.as_chunks_mut::<N>().0 {
        *d = px;
    }
}

fn glyph_row<const N: usize>(dst: &mut [u8], coverage: &[u8], levels: &[[u8; 4]; 16]) {
    for (d, &c) in dst.as_chunks_mut::<N>().0.iter_mut().zip(coverage) {
        let l = &levels[(c >> 4) as usize];
        d.copy_from_slice(&l[..N]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pixel::PixelFormat;

    fn geo(w: usize, h: usize, stride: usize, bpp: usize, format: PixelFormat) -> Geometry {
        Geometry {
            width: w,
            height: h,
            stride,
            bytes_per_pixel: bpp,
            format,
        }
    }

    fn console(g: Geometry) -> Console<Vec<u8>> {
        // Padding bytes start as a marker so stray writes show up.
        Console::new(vec![0xEE; g.bytes_needed()], g).unwrap()
    }

    /// Pixels in a cell that are not the background colour.
    fn ink(c: &Console<Vec<u8>>, col: usize, row: usize) -> usize {
        let g = c.geometry();
        let bg = PALETTE[DEFAULT_BG as usize];
        let mut n = 0;
        for y in row * CELL_HEIGHT..(row + 1) * CELL_HEIGHT {
            for x in col * CELL_WIDTH..(col + 1) * CELL_WIDTH {
                if g.pixel(c.buffer(), x, y) != bg {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn cell_size_is_the_fonts() {
        assert_eq!((CELL_WIDTH, CELL_HEIGHT), (9, 16));
    }

    #[test]
    fn a_glyph_lands_in_its_cell_in_every_format() {
        for (format, bpp) in [
            (PixelFormat::Bgr, 3),
            (PixelFormat::Bgr, 4),
            (PixelFormat::Rgb, 4),
            (PixelFormat::Grey, 1),
            (
                PixelFormat::Bitmask {
                    red: 16,
                    green: 8,
                    blue: 0,
                },
                3,
            ),
            (
                PixelFormat::Bitmask {
                    red: 8,
                    green: 16,
                    blue: 24,
                },
                4,
            ),
        ] {
            let g = geo(50, 40, 61, bpp, format);
            let mut c = console(g);
            c.write(b"\x1b[?25l\nAb");
            c.flush();
            assert!(ink(&c, 0, 1) > 10, "{format:?}: 'A' drawn");
            assert!(ink(&c, 1, 1) > 10, "{format:?}: 'b' drawn");
            assert_eq!(
                ink(&c, 0, 0) + ink(&c, 2, 1) + ink(&c, 3, 0),
                0,
                "{format:?}"
            );
            // Full-coverage pixels of the glyph have the foreground colour.
            let fg = PALETTE[7];
            let want = if format == PixelFormat::Grey {
                Rgb(fg.grey(), fg.grey(), fg.grey())
            } else {
                fg
            };
            let full = (0..CELL_HEIGHT)
                .flat_map(|y| (0..CELL_WIDTH).map(move |x| (x, y + CELL_HEIGHT)))
                .filter(|&(x, y)| g.pixel(c.buffer(), x, y) == want)
                .count();
            assert!(full > 5, "{format:?}: {full} full pixels");
            // The stride padding past the visible width is never written.
            for y in 0..g.height - 1 {
                let pad = &c.buffer()[(y * g.stride + g.width) * bpp..(y + 1) * g.stride * bpp];
                assert!(
                    pad.iter().all(|&b| b == 0xEE),
                    "{format:?}: line {y} padding"
                );
            }
        }
    }

    #[test]
    fn the_same_text_gives_the_same_pixels_and_different_text_does_not() {
        let g = geo(9 * 4, 16, 9 * 4, 3, PixelFormat::Rgb);
        let draw = |t: &[u8]| {
            let mut c = console(g);
            c.write(b"\x1b[?25l");
            c.write(t);
            c.flush();
            c.buffer().to_vec()
        };
        assert_eq!(draw(b"ab"), draw(b"ab"));
        assert_ne!(draw(b"ab"), draw(b"ba"));
        assert_ne!(draw(b"l"), draw(b"1"));
        // backspace-space-backspace restores the blank screen exactly
        assert_eq!(draw(b"x\x08 \x08"), draw(b""));
    }

    #[test]
    fn only_changed_cells_are_redrawn() {
        let g = geo(9 * 10, 16 * 3, 9 * 10, 4, PixelFormat::Bgr);
        let mut c = console(g);
        c.write(b"hello");
        // five letters plus the cursor cell
        assert_eq!(c.flush(), 6);
        assert_eq!(c.flush(), 0);
        c.write(b"!");
        // '!' replaces the old cursor cell; the cursor moves one right
        assert_eq!(c.flush(), 2);
    }

    #[test]
    fn scrolling_moves_the_pixels_up() {
        let g = geo(9 * 6, 16 * 2, 9 * 6, 3, PixelFormat::Bgr);
        let mut c = console(g);
        c.write(b"\x1b[?25ltop\nbottom");
        c.flush();
        let bottom_row: Vec<u8> = c.buffer()[16 * g.stride * 3..].to_vec();
        c.write(b"\n");
        c.flush();
        assert_eq!(
            &c.buffer()[..16 * g.stride * 3],
            &bottom_row[..],
            "row 1 moved to row 0"
        );
        assert_eq!(ink(&c, 0, 1) + ink(&c, 1, 1), 0, "new row blank");
    }

    #[test]
    fn cursor_is_an_inverted_cell() {
        let g = geo(9 * 4, 16, 9 * 4, 4, PixelFormat::Bgr);
        let mut c = console(g);
        c.flush();
        assert_eq!(
            ink(&c, 0, 0),
            CELL_WIDTH * CELL_HEIGHT,
            "solid block on a blank"
        );
        c.write(b"\x1b[?25l");
        c.flush();
        assert_eq!(ink(&c, 0, 0), 0);
    }

    #[test]
    fn geometry_that_cannot_hold_a_cell_is_an_error() {
        let g = geo(8, 16, 8, 4, PixelFormat::Bgr);
        assert_eq!(
            Console::new(vec![0; g.bytes_needed()], g).err(),
            Some(GeometryError::TooSmallForText)
        );
        let g = geo(100, 100, 100, 4, PixelFormat::Bgr);
        assert!(matches!(
            Console::new(vec![0; 10], g).err(),
            Some(GeometryError::BufferTooSmall { .. })
        ));
    }

    #[test]
    fn the_leftover_margin_is_cleared() {
        // 40 px wide: four 9-px cells and a 4-px margin on the right.
        let g = geo(40, 20, 40, 3, PixelFormat::Rgb);
        let c = console(g);
        let bg = PALETTE[DEFAULT_BG as usize];
        assert_eq!(g.pixel(c.buffer(), 39, 19), bg);
        assert_eq!(c.terminal().cols(), 4);
        assert_eq!(c.terminal().rows(), 1);
    }
}
