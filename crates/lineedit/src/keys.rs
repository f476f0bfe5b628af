//! Turning terminal input bytes into keys.
//!
//! A VT100-style terminal sends printable ASCII as itself, control keys as
//! C0 bytes (Ctrl-A = 0x01 ...), and cursor keys as escape sequences:
//! `ESC [ A` (CSI, "normal" cursor mode) or `ESC O A` (SS3, "application"
//! cursor mode), `ESC [ 3 ~` for Delete, `ESC [ 1 ~` / `ESC [ H` / `ESC O H`
//! for Home and so on. Enter arrives as CR, LF or CR LF depending on the
//! terminal and on whether the input is a pipe; each ends exactly one line.

/// One key as the editor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A printable ASCII character (0x20..=0x7E).
    Char(u8),
    /// CR, LF or CR LF.
    Enter,
    /// BS (0x08, Ctrl-H) or DEL (0x7F): erase before the cursor.
    Backspace,
    /// `ESC [ 3 ~` or Ctrl-D: erase under the cursor.
    Delete,
    /// Arrow left or Ctrl-B.
    Left,
    /// Arrow right or Ctrl-F.
    Right,
    /// Arrow up or Ctrl-P: older history entry.
    Up,
    /// Arrow down or Ctrl-N: newer history entry.
    Down,
    /// Home or Ctrl-A.
    Home,
    /// End or Ctrl-E.
    End,
    /// Tab: complete the word before the cursor.
    Tab,
    /// Ctrl-U: erase from the start of the line to the cursor.
    KillToStart,
    /// Ctrl-K: erase from the cursor to the end of the line.
    KillToEnd,
    /// Ctrl-W: erase the word before the cursor.
    KillWord,
    /// Ctrl-C: drop the line.
    Cancel,
    /// Ctrl-L: clear the screen and draw the line again.
    Redraw,
    /// Anything else: other control bytes, bytes above 0x7E, escape
    /// sequences we do not know (F-keys, Alt-combinations).
    Ignored,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Esc,
    /// After `ESC [`, collecting the first numeric parameter.
    Csi,
    /// After `ESC O`.
    Ss3,
}

/// Parameters larger than this are clamped; no key we know uses more than 2 digits.
const PARAM_MAX: u16 = 9999;

/// Byte-at-a-time key decoder. It holds the state of a partly received
/// escape sequence, so bytes may arrive in any chunking.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    /// The first numeric parameter of a CSI sequence.
    param: u16,
    /// A `;` was seen: later parameters (modifiers) do not change `param`.
    later_param: bool,
    last_was_cr: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder in the ground state.
    pub const fn new() -> Self {
        Decoder {
            state: State::Ground,
            param: 0,
            later_param: false,
            last_was_cr: false,
        }
    }

    /// Feeds one byte; returns a key once one is complete. `None` means the
    /// byte was part of an unfinished sequence (or the LF of a CR LF).
    pub fn feed(&mut self, byte: u8) -> Option<Key> {
        let after_cr = core::mem::replace(&mut self.last_was_cr, byte == b'\r');
        match self.state {
            State::Ground => Self::ground(byte, after_cr, &mut self.state),
            State::Esc => match byte {
                b'[' => {
                    self.state = State::Csi;
                    self.param = 0;
                    self.later_param = false;
                    None
                }
                b'O' => {
                    self.state = State::Ss3;
                    None
                }
                // ESC ESC: the first one was a lone ESC; start over.
                0x1B => Some(Key::Ignored),
                // Alt-<key> or a lone ESC before a key: drop the ESC and
                // take the key as if typed alone.
                _ => {
                    self.state = State::Ground;
                    Self::ground(byte, after_cr, &mut self.state)
                }
            },
            State::Csi => match byte {
                b'0'..=b'9' => {
                    if !self.later_param {
                        let p = u32::from(self.param) * 10 + u32::from(byte - b'0');
                        self.param = p.min(u32::from(PARAM_MAX)) as u16;
                    }
                    None
                }
                b';' => {
                    self.later_param = true;
                    None
                }
                // Further parameters, private markers and intermediates
                // (`;`, `?`, ` ` ...) are skipped: modified keys
                // (`ESC [ 1 ; 5 C`) count as the plain key.
                0x20..=0x2F | b':' | b'<'..=b'?' => None,
                0x40..=0x7E => {
                    self.state = State::Ground;
                    Some(match (byte, self.param) {
                        (b'A', _) => Key::Up,
                        (b'B', _) => Key::Down,
                        (b'C', _) => Key::Right,
                        (b'D', _) => Key::Left,
                        (b'H', _) => Key::Home,
                        (b'F', _) => Key::End,
                        (b'~', 1 | 7) => Key::Home,
                        (b'~', 4 | 8) => Key::End,
                        (b'~', 3) => Key::Delete,
                        _ => Key::Ignored,
                    })
                }
                // A control byte or non-ASCII inside a sequence aborts it;
                // the byte counts on its own.
                _ => {
                    self.state = State::Ground;
                    Self::ground(byte, after_cr, &mut self.state)
                }
            },
            State::Ss3 => {
                self.state = State::Ground;
                match byte {
                    b'A' => Some(Key::Up),
                    b'B' => Some(Key::Down),
                    b'C' => Some(Key::Right),
                    b'D' => Some(Key::Left),
                    b'H' => Some(Key::Home),
                    b'F' => Some(Key::End),
                    0x40..=0x7E => Some(Key::Ignored),
                    _ => Self::ground(byte, after_cr, &mut self.state),
                }
            }
        }
    }

    fn ground(byte: u8, after_cr: bool, state: &mut State) -> Option<Key> {
        Some(match byte {
            b'\n' if after_cr => return None,
            b'\r' | b'\n' => Key::Enter,
            0x1B => {
                *state = State::Esc;
                return None;
            }
            0x20..=0x7E => Key::Char(byte),
            0x08 | 0x7F => Key::Backspace,
            b'\t' => Key::Tab,
            0x01 => Key::Home,
            0x02 => Key::Left,
            0x03 => Key::Cancel,
            0x04 => Key::Delete,
            0x05 => Key::End,
            0x06 => Key::Right,
            0x0B => Key::KillToEnd,
            0x0C => Key::Redraw,
            0x0E => Key::Down,
            0x10 => Key::Up,
            0x15 => Key::KillToStart,
            0x17 => Key::KillWord,
            _ => Key::Ignored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn keys(bytes: &[u8]) -> Vec<Key> {
        let mut d = Decoder::new();
        bytes.iter().filter_map(|&b| d.feed(b)).collect()
    }

    #[test]
    fn printable_and_enter_variants() {
        assert_eq!(
            keys(b"a\rb\nc\r\nd"),
            [
                Key::Char(b'a'),
                Key::Enter,
                Key::Char(b'b'),
                Key::Enter,
                Key::Char(b'c'),
                Key::Enter,
                Key::Char(b'd')
            ]
        );
        // Two CRs are two lines, LF LF too; only CR LF is one.
        assert_eq!(keys(b"\r\r"), [Key::Enter, Key::Enter]);
        assert_eq!(keys(b"\n\n"), [Key::Enter, Key::Enter]);
        assert_eq!(keys(b"\n\r"), [Key::Enter, Key::Enter]);
    }

    #[test]
    fn cursor_keys_in_both_modes() {
        assert_eq!(
            keys(b"\x1b[A\x1b[B\x1b[C\x1b[D\x1bOA\x1bOB\x1bOC\x1bOD"),
            [
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left
            ]
        );
    }

    #[test]
    fn home_end_delete_spellings() {
        assert_eq!(
            keys(b"\x1b[H\x1b[F\x1bOH\x1bOF\x1b[1~\x1b[4~\x1b[7~\x1b[8~\x1b[3~"),
            [
                Key::Home,
                Key::End,
                Key::Home,
                Key::End,
                Key::Home,
                Key::End,
                Key::Home,
                Key::End,
                Key::Delete
            ]
        );
    }

    #[test]
    fn control_keys() {
        assert_eq!(
            keys(b"\x01\x05\x02\x06\x10\x0e\x15\x0b\x17\x03\x04\x0c\t\x08\x7f"),
            [
                Key::Home,
                Key::End,
                Key::Left,
                Key::Right,
                Key::Up,
                Key::Down,
                Key::KillToStart,
                Key::KillToEnd,
                Key::KillWord,
                Key::Cancel,
                Key::Delete,
                Key::Redraw,
                Key::Tab,
                Key::Backspace,
                Key::Backspace
            ]
        );
    }

    #[test]
    fn unknown_sequences_are_swallowed_whole() {
        // F5 (ESC [ 1 5 ~), Insert (ESC [ 2 ~), F1 (ESC O P), modified arrow.
        assert_eq!(
            keys(b"\x1b[15~x\x1b[2~\x1bOPy\x1b[1;5C\x1b[3;5~"),
            [
                Key::Ignored,
                Key::Char(b'x'),
                Key::Ignored,
                Key::Ignored,
                Key::Char(b'y'),
                Key::Right,
                Key::Delete
            ]
        );
        // A huge parameter does not overflow.
        assert_eq!(keys(b"\x1b[99999999999999999~"), [Key::Ignored]);
    }

    #[test]
    fn interrupted_sequences_keep_the_interrupting_byte() {
        // ESC then a letter: the letter counts (Alt-x, or a stray ESC).
        assert_eq!(keys(b"\x1bx"), [Key::Char(b'x')]);
        // A CR inside a CSI ends the line rather than vanishing.
        assert_eq!(keys(b"\x1b[1\r"), [Key::Enter]);
        assert_eq!(keys(b"\x1bO\r"), [Key::Enter]);
        assert_eq!(keys(b"\x1b\x1b[A"), [Key::Ignored, Key::Up]);
    }

    #[test]
    fn sequences_split_across_feeds() {
        let mut d = Decoder::new();
        assert_eq!(d.feed(0x1b), None);
        assert_eq!(d.feed(b'['), None);
        assert_eq!(d.feed(b'3'), None);
        assert_eq!(d.feed(b'~'), Some(Key::Delete));
        assert_eq!(d.feed(b'\r'), Some(Key::Enter));
        assert_eq!(d.feed(b'\n'), None);
        assert_eq!(d.feed(b'\n'), Some(Key::Enter));
    }

    #[test]
    fn high_bytes_are_ignored() {
        assert_eq!(
            keys(&[0x80, 0xff, b'a']),
            [Key::Ignored, Key::Ignored, Key::Char(b'a')]
        );
    }
}
