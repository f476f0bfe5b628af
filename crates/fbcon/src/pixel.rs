//! Framebuffer geometry and pixel encoding.

use core::fmt;

/// How a pixel's colour is laid out in its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// Red, green, blue bytes in that order (then padding, if any).
    Rgb,
    /// Blue, green, red bytes in that order (VESA's and most GOP modes).
    Bgr,
    /// One grey byte (then padding, if any).
    Grey,
    /// A little-endian pixel value with 8-bit channels at these bit offsets.
    Bitmask { red: u8, green: u8, blue: u8 },
}

/// A colour as 8-bit red, green and blue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `self` over `bg` with coverage `alpha` (0 = all `bg`, 255 = all `self`).
    pub fn blend(self, bg: Rgb, alpha: u8) -> Rgb {
        let mix = |f: u8, b: u8| {
            let a = alpha as u32;
            ((f as u32 * a + b as u32 * (255 - a) + 127) / 255) as u8
        };
        Rgb(mix(self.0, bg.0), mix(self.1, bg.1), mix(self.2, bg.2))
    }

    /// Luma (ITU-R BT.601 weights, in 1/256ths).
    pub fn grey(self) -> u8 {
        ((self.0 as u32 * 77 + self.1 as u32 * 150 + self.2 as u32 * 29) >> 8) as u8
    }
}

/// The shape of a linear framebuffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Visible pixels per line.
    pub width: usize,
    /// Lines.
    pub height: usize,
    /// Pixels from the start of one line to the start of the next (>= width).
    pub stride: usize,
    /// 1 to 4.
    pub bytes_per_pixel: usize,
    pub format: PixelFormat,
}

/// Why a framebuffer description cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    Empty,
    BytesPerPixel(usize),
    StrideBelowWidth {
        stride: usize,
        width: usize,
    },
    /// The format's channels do not fit in the pixel's bytes.
    FormatNeedsMoreBytes,
    /// The buffer is shorter than the geometry says.
    BufferTooSmall {
        need: usize,
        have: usize,
    },
    /// Smaller than one character cell.
    TooSmallForText,
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeometryError::Empty => f.write_str("zero width or height"),
            GeometryError::BytesPerPixel(n) => write!(f, "{n} bytes per pixel (1 to 4 supported)"),
            GeometryError::StrideBelowWidth { stride, width } => {
                write!(f, "stride {stride} is less than the width {width}")
            }
            GeometryError::FormatNeedsMoreBytes => {
                f.write_str("the pixel format does not fit in the bytes per pixel")
            }
            GeometryError::BufferTooSmall { need, have } => {
                write!(f, "buffer of {have} bytes, the geometry needs {need}")
            }
            GeometryError::TooSmallForText => f.write_str("smaller than one character cell"),
        }
    }
}

impl Geometry {
    /// Bytes the geometry covers: up to the last visible pixel.
    pub fn bytes_needed(&self) -> usize {
        if self.width == 0 || self.height == 0 {
            return 0;
        }
        ((self.height - 1) * self.stride + self.width) * self.bytes_per_pixel
    }

    /// Checks the geometry against a buffer of `len` bytes.
    pub fn check(&self, len: usize) -> Result<(), GeometryError> {
        if self.width == 0 || self.height == 0 {
            return Err(GeometryError::Empty);
        }
        if !(1..=4).contains(&self.bytes_per_pixel) {
            return Err(GeometryError::BytesPerPixel(self.bytes_per_pixel));
        }
        if self.stride < self.width {
            return Err(GeometryError::StrideBelowWidth {
                stride: self.stride,
                width: self.width,
            });
        }
        let bits = self.bytes_per_pixel * 8;
        let fits = match self.format {
            PixelFormat::Rgb | PixelFormat::Bgr => self.bytes_per_pixel >= 3,
            PixelFormat::Grey => true,
            PixelFormat::Bitmask { red, green, blue } => {
                [red, green, blue].iter().all(|&p| p as usize + 8 <= bits)
            }
        };
        if !fits {
            return Err(GeometryError::FormatNeedsMoreBytes);
        }
        let need = self
            .height
            .checked_mul(self.stride)
            .and_then(|n| n.checked_mul(self.bytes_per_pixel))
            .map(|_| self.bytes_needed())
            .ok_or(GeometryError::BufferTooSmall {
                need: usize::MAX,
                have: len,
            })?;
        if len < need {
            return Err(GeometryError::BufferTooSmall { need, have: len });
        }
        Ok(())
    }

    /// The bytes of one pixel of colour `c` (the first `bytes_per_pixel` are used).
    pub fn encode(&self, c: Rgb) -> [u8; 4] {
        match self.format {
            PixelFormat::Rgb => [c.0, c.1, c.2, 0],
            PixelFormat::Bgr => [c.2, c.1, c.0, 0],
            PixelFormat::Grey => [c.grey(), 0, 0, 0],
            PixelFormat::Bitmask { red, green, blue } => {
                let v = ((c.0 as u32) << red) | ((c.1 as u32) << green) | ((c.2 as u32) << blue);
                v.to_le_bytes()
            }
        }
    }

    /// The colour of the pixel at `(x, y)` in `buf` (grey comes back as r = g = b).
    pub fn pixel(&self, buf: &[u8], x: usize, y: usize) -> Rgb {
        let at = (y * self.stride + x) * self.bytes_per_pixel;
        let p = &buf[at..at + self.bytes_per_pixel];
        match self.format {
            PixelFormat::Rgb => Rgb(p[0], p[1], p[2]),
            PixelFormat::Bgr => Rgb(p[2], p[1], p[0]),
            PixelFormat::Grey => Rgb(p[0], p[0], p[0]),
            PixelFormat::Bitmask { red, green, blue } => {
                let mut b = [0u8; 4];
                b[..p.len()].copy_from_slice(p);
                let v = u32::from_le_bytes(b);
                Rgb((v >> red) as u8, (v >> green) as u8, (v >> blue) as u8)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(format: PixelFormat, bpp: usize) -> Geometry {
        Geometry {
            width: 10,
            height: 4,
            stride: 12,
            bytes_per_pixel: bpp,
            format,
        }
    }

    #[test]
    fn encodings_put_channels_where_the_format_says() {
        let c = Rgb(0x11, 0x22, 0x33);
        assert_eq!(geo(PixelFormat::Rgb, 3).encode(c)[..3], [0x11, 0x22, 0x33]);
        assert_eq!(geo(PixelFormat::Bgr, 4).encode(c), [0x33, 0x22, 0x11, 0]);
        assert_eq!(geo(PixelFormat::Grey, 1).encode(Rgb(255, 255, 255))[0], 255);
        assert_eq!(geo(PixelFormat::Grey, 1).encode(Rgb(0, 0, 0))[0], 0);
        let m = PixelFormat::Bitmask {
            red: 0,
            green: 8,
            blue: 16,
        };
        assert_eq!(geo(m, 4).encode(c), [0x11, 0x22, 0x33, 0]);
        // 16-bit-aligned channels in a 4-byte pixel
        let m = PixelFormat::Bitmask {
            red: 24,
            green: 16,
            blue: 8,
        };
        assert_eq!(geo(m, 4).encode(c), [0, 0x33, 0x22, 0x11]);
    }

    #[test]
    fn pixel_reads_back_what_encode_wrote() {
        for (f, bpp) in [
            (PixelFormat::Rgb, 3),
            (PixelFormat::Rgb, 4),
            (PixelFormat::Bgr, 3),
            (PixelFormat::Bgr, 4),
            (
                PixelFormat::Bitmask {
                    red: 16,
                    green: 8,
                    blue: 0,
                },
                4,
            ),
        ] {
            let g = geo(f, bpp);
            let mut buf = vec![0u8; g.bytes_needed()];
            let c = Rgb(1, 2, 3);
            let at = (3 * g.stride + 9) * bpp;
            buf[at..at + bpp].copy_from_slice(&g.encode(c)[..bpp]);
            assert_eq!(g.pixel(&buf, 9, 3), c, "{f:?} {bpp}");
        }
    }

    #[test]
    fn bad_geometries_are_rejected_with_the_reason() {
        let g = geo(PixelFormat::Bgr, 3);
        assert_eq!(g.check(g.bytes_needed()), Ok(()));
        // the last line need not have its padding
        assert_eq!(g.bytes_needed(), (3 * 12 + 10) * 3);
        assert_eq!(
            g.check(g.bytes_needed() - 1),
            Err(GeometryError::BufferTooSmall {
                need: 138,
                have: 137
            })
        );
        assert_eq!(
            Geometry { stride: 9, ..g }.check(1 << 20),
            Err(GeometryError::StrideBelowWidth {
                stride: 9,
                width: 10
            })
        );
        assert_eq!(
            Geometry {
                bytes_per_pixel: 2,
                ..g
            }
            .check(1 << 20),
            Err(GeometryError::FormatNeedsMoreBytes)
        );
        assert_eq!(
            Geometry {
                bytes_per_pixel: 5,
                ..g
            }
            .check(1 << 20),
            Err(GeometryError::BytesPerPixel(5))
        );
        assert_eq!(
            Geometry { height: 0, ..g }.check(1 << 20),
            Err(GeometryError::Empty)
        );
        let m = PixelFormat::Bitmask {
            red: 25,
            green: 8,
            blue: 0,
        };
        assert_eq!(
            geo(m, 4).check(1 << 20),
            Err(GeometryError::FormatNeedsMoreBytes)
        );
        let huge = Geometry {
            height: usize::MAX,
            stride: usize::MAX,
            ..g
        };
        assert!(huge.check(1 << 20).is_err());
    }

    #[test]
    fn blend_ends_are_exact() {
        let (f, b) = (Rgb(200, 100, 0), Rgb(0, 50, 255));
        assert_eq!(f.blend(b, 255), f);
        assert_eq!(f.blend(b, 0), b);
        assert_eq!(f.blend(b, 128), Rgb(100, 75, 127));
    }
}
