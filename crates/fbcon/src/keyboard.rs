//! PS/2 keyboard: scancode set 1 (what the i8042 delivers with translation
//! on, the PC default) to the bytes a serial terminal would send, so the
//! shell cannot tell a keyboard from a terminal.
//!
//! Letters, digits and punctuation follow the US layout with Shift and Caps
//! Lock; Ctrl with a letter gives its control code (Ctrl-C = 0x03); Enter is
//! CR, Backspace is DEL (0x7F); the arrows, Home, End, Insert, Delete, Page
//! Up/Down give the VT100/xterm sequences (`ESC [ A` for Up). The keypad
//! always types its digits and operators. Function keys, Alt, the Windows
//! keys and Pause are consumed without output.

/// Up to four bytes produced by one scancode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Bytes {
    buf: [u8; 4],
    len: u8,
}

impl Bytes {
    fn one(b: u8) -> Bytes {
        Bytes {
            buf: [b, 0, 0, 0],
            len: 1,
        }
    }

    fn seq(s: &[u8]) -> Bytes {
        let mut buf = [0; 4];
        buf[..s.len()].copy_from_slice(s);
        Bytes {
            buf,
            len: s.len() as u8,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefix {
    None,
    /// After 0xE0: the extended keys.
    E0,
    /// After 0xE1 (Pause): this many more bytes to skip.
    E1(u8),
}

/// Keeps the modifier state between scancodes.
#[derive(Debug)]
pub struct Decoder {
    prefix: Prefix,
    lshift: bool,
    rshift: bool,
    lctrl: bool,
    rctrl: bool,
    caps: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Unshifted and shifted characters for make codes 0x00..=0x39 (0 = none).
const MAP: [(u8, u8); 0x3A] = {
    let mut m = [(0u8, 0u8); 0x3A];
    let rows: [(usize, &[u8], &[u8]); 4] = [
        (0x02, b"1234567890-=", b"!@#$%^&*()_+"),
        (0x10, b"qwertyuiop[]", b"QWERTYUIOP{}"),
        (0x1E, b"asdfghjkl;'`", b"ASDFGHJKL:\"~"),
        (0x2B, b"\\zxcvbnm,./", b"|ZXCVBNM<>?"),
    ];
    let mut r = 0;
    while r < rows.len() {
        let (base, lo, hi) = rows[r];
        let mut i = 0;
        while i < lo.len() {
            m[base + i] = (lo[i], hi[i]);
            i += 1;
        }
        r += 1;
    }
    m[0x01] = (0x1B, 0x1B); // Esc
    m[0x0E] = (0x7F, 0x7F); // Backspace sends DEL, like a terminal
    m[0x0F] = (b'\t', b'\t');
    m[0x1C] = (b'\r', b'\r'); // Enter
    m[0x39] = (b' ', b' ');
    m
};

impl Decoder {
    pub const fn new() -> Decoder {
        Decoder {
            prefix: Prefix::None,
            lshift: false,
            rshift: false,
            lctrl: false,
            rctrl: false,
            caps: false,
        }
    }

    pub fn caps_lock(&self) -> bool {
        self.caps
    }

    /// Feeds one byte from the controller; returns what the key types.
    pub fn feed(&mut self, sc: u8) -> Option<Bytes> {
        match (self.prefix, sc) {
            (Prefix::E1(n), _) => {
                self.prefix = if n > 1 {
                    Prefix::E1(n - 1)
                } else {
                    Prefix::None
                };
                None
            }
            (_, 0xE0) => {
                self.prefix = Prefix::E0;
                None
            }
            (_, 0xE1) => {
                self.prefix = Prefix::E1(2);
                None
            }
            // Controller and keyboard replies, not keys: ACK, resend, errors,
            // echo. (0xAA, self-test passed, doubles as Left Shift's break code;
            // treating it as a release is harmless.)
            (Prefix::None, 0x00 | 0xEE | 0xFA | 0xFC | 0xFD | 0xFE | 0xFF) => None,
            (Prefix::E0, _) => {
                self.prefix = Prefix::None;
                self.extended(sc & 0x7F, sc & 0x80 == 0)
            }
            (Prefix::None, _) => self.plain(sc & 0x7F, sc & 0x80 == 0),
        }
    }

    fn shift(&self) -> bool {
        self.lshift || self.rshift
    }

    fn ctrl(&self) -> bool {
        self.lctrl || self.rctrl
    }

    fn plain(&mut self, code: u8, make: bool) -> Option<Bytes> {
        match code {
            0x2A => self.lshift = make,
            0x36 => self.rshift = make,
            0x1D => self.lctrl = make,
            0x3A if make => self.caps = !self.caps,
            _ if !make => {}
            0x37 => return Some(Bytes::one(b'*')),
            0x47..=0x53 => {
                let ch = b"789-456+1230."[(code - 0x47) as usize];
                return Some(Bytes::one(ch));
            }
            _ => {
                let &(lo, hi) = MAP.get(code as usize)?;
                if lo == 0 {
                    return None;
                }
                let letter = lo.is_ascii_lowercase();
                let upper = if letter {
                    self.shift() != self.caps
                } else {
                    self.shift()
                };
                let ch = if upper { hi } else { lo };
                if self.ctrl() {
                    return match lo {
                        b'a'..=b'z' => Some(Bytes::one(lo & 0x1F)),
                        b'[' => Some(Bytes::one(0x1B)),
                        b'\\' => Some(Bytes::one(0x1C)),
                        b']' => Some(Bytes::one(0x1D)),
                        _ => Some(Bytes::one(ch)),
                    };
                }
                return Some(Bytes::one(ch));
            }
        }
        None
    }

    fn extended(&mut self, code: u8, make: bool) -> Option<Bytes> {
        match code {
            0x1D => self.rctrl = make,
            _ if !make => {}
            0x1C => return Some(Bytes::one(b'\r')), // keypad Enter
            0x35 => return Some(Bytes::one(b'/')),  // keypad /
            0x48 => return Some(Bytes::seq(b"\x1b[A")),
            0x50 => return Some(Bytes::seq(b"\x1b[B")),
            0x4D => return Some(Bytes::seq(b"\x1b[C")),
            0x4B => return Some(Bytes::seq(b"\x1b[D")),
            0x47 => return Some(Bytes::seq(b"\x1b[H")),
            0x4F => return Some(Bytes::seq(b"\x1b[F")),
            0x52 => return Some(Bytes::seq(b"\x1b[2~")),
            0x53 => return Some(Bytes::seq(b"\x1b[3~")),
            0x49 => return Some(Bytes::seq(b"\x1b[5~")),
            0x51 => return Some(Bytes::seq(b"\x1b[6~")),
            // 0x2A/0x36: the fake shifts around extended keys; the rest
            // (Right Alt, Windows keys, Menu, Print Screen) type nothing.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Types a scancode stream and collects the output.
    fn typed(codes: &[u8]) -> Vec<u8> {
        let mut d = Decoder::new();
        codes
            .iter()
            .filter_map(|&c| d.feed(c))
            .flat_map(|b| b.as_slice().to_vec())
            .collect()
    }

    /// Make then break of each code.
    fn press(codes: &[u8]) -> Vec<u8> {
        codes.iter().flat_map(|&c| [c, c | 0x80]).collect()
    }

    #[test]
    fn letters_digits_and_enter() {
        // u p t i m e Enter
        assert_eq!(
            typed(&press(&[0x16, 0x19, 0x14, 0x17, 0x32, 0x12, 0x1C])),
            b"uptime\r"
        );
        assert_eq!(
            typed(&press(&[0x02, 0x0B, 0x0C, 0x0D, 0x39, 0x35])),
            b"10-= /"
        );
        // break codes alone type nothing
        assert_eq!(typed(&[0x96, 0x99]), b"");
    }

    #[test]
    fn shift_and_caps_lock() {
        // Shift held: 'a' '1' ';' -> 'A' '!' ':'
        let mut s = vec![0x2A];
        s.extend(press(&[0x1E, 0x02, 0x27]));
        s.push(0xAA);
        s.extend(press(&[0x1E]));
        assert_eq!(typed(&s), b"A!:a");
        // right shift too
        assert_eq!(typed(&[0x36, 0x1E, 0x9E, 0xB6, 0x1E]), b"Aa");
        // Caps Lock: letters upper, digits not; Shift inverts letters back
        let mut s = press(&[0x3A, 0x1E, 0x02]);
        s.push(0x2A);
        s.extend(press(&[0x1E, 0x02]));
        s.push(0xAA);
        s.extend(press(&[0x3A, 0x1E]));
        assert_eq!(typed(&s), b"A1a!a");
    }

    #[test]
    fn ctrl_gives_control_codes() {
        // Ctrl-C, Ctrl-A, then release Ctrl: 'c'
        assert_eq!(
            typed(&[0x1D, 0x2E, 0xAE, 0x1E, 0x9E, 0x9D, 0x2E]),
            b"\x03\x01c"
        );
        // right Ctrl (E0 1D) works too, and its release (E0 9D) ends it
        assert_eq!(typed(&[0xE0, 0x1D, 0x2E, 0xE0, 0x9D, 0x2E]), b"\x03c");
    }

    #[test]
    fn arrows_and_editing_keys_give_vt100_sequences() {
        let s = [
            0xE0, 0x48, 0xE0, 0xC8, // up
            0xE0, 0x50, 0xE0, 0xD0, // down
            0xE0, 0x4D, 0xE0, 0xCD, // right
            0xE0, 0x4B, 0xE0, 0xCB, // left
            0xE0, 0x47, 0xE0, 0x4F, 0xE0, 0x53, // home end delete
        ];
        assert_eq!(typed(&s), b"\x1b[A\x1b[B\x1b[C\x1b[D\x1b[H\x1b[F\x1b[3~");
        // The keypad without E0 types digits, not arrows.
        assert_eq!(typed(&press(&[0x48, 0x4B, 0x52, 0x53, 0x37])), b"840.*");
        assert_eq!(typed(&[0xE0, 0x1C, 0xE0, 0x35]), b"\r/");
    }

    #[test]
    fn backspace_tab_escape() {
        assert_eq!(typed(&press(&[0x0E, 0x0F, 0x01])), b"\x7f\t\x1b");
    }

    #[test]
    fn fake_shifts_pause_and_replies_are_swallowed() {
        // Print Screen: E0 2A E0 37 (fake shift then PrtSc): nothing, no shift stuck
        assert_eq!(
            typed(&[0xE0, 0x2A, 0xE0, 0x37, 0xE0, 0xB7, 0xE0, 0xAA, 0x1E]),
            b"a"
        );
        // Pause: E1 1D 45 E1 9D C5, then 'a'
        assert_eq!(typed(&[0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5, 0x1E]), b"a");
        // ACK, resend, errors
        assert_eq!(typed(&[0xFA, 0xFE, 0x00, 0xFF, 0xEE, 0x1E]), b"a");
        // function keys and Alt type nothing
        assert_eq!(typed(&press(&[0x3B, 0x44, 0x57, 0x58, 0x38])), b"");
    }

    #[test]
    fn every_scancode_is_safe() {
        let mut d = Decoder::new();
        for a in 0..=255u8 {
            for b in [0x00, 0x1E, 0xE0, 0xE1, 0x9E, 0xFF] {
                let _ = d.feed(a);
                let _ = d.feed(b);
            }
        }
    }
}
