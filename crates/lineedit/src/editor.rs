//! The edit buffer, its cursor, the history ring and completion, with the
//! output that keeps a VT100 terminal's line in step.
//!
//! Output assumptions: the terminal is at least as wide as prompt + line
//! (cursor motion is relative, `ESC [ n D` / `ESC [ n C`, and does not
//! follow wrapped lines), `ESC [ K` erases to the end of the line, and a
//! `\n` written by the caller's output becomes CR LF (the kernel's serial
//! writer does that). Plain typing at the end of the line echoes exactly the
//! typed characters, so a piped transcript reads like the input.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use crate::keys::{Decoder, Key};

/// Where completion candidates come from.
pub trait Completer {
    /// Calls `add` with every word that may stand after the complete words
    /// `before` (empty for the first word of the line). The editor filters by
    /// the typed prefix, sorts and removes duplicates.
    fn candidates(&self, before: &[&str], add: &mut dyn FnMut(&str));
}

/// No completion at all.
impl Completer for () {
    fn candidates(&self, _: &[&str], _: &mut dyn FnMut(&str)) {}
}

/// Completes the first word of a line from a fixed list.
pub struct Words<'a>(pub &'a [&'a str]);

impl Completer for Words<'_> {
    fn candidates(&self, before: &[&str], add: &mut dyn FnMut(&str)) {
        if before.is_empty() {
            self.0.iter().for_each(|w| add(w));
        }
    }
}

/// What one input byte did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still editing.
    Pending,
    /// Enter: the finished line (also added to the history).
    Line(String),
    /// Ctrl-C: the line was dropped; the caller shows a fresh prompt.
    Cancelled,
}

/// Column width the candidate list is wrapped to.
const LIST_WIDTH: usize = 78;

/// A single-line editor for a serial terminal.
pub struct Editor {
    prompt: String,
    buf: Vec<u8>,
    cursor: usize,
    max_len: usize,
    history: VecDeque<String>,
    history_cap: usize,
    /// While browsing the history: index of the shown entry, 0 = newest.
    browsing: Option<usize>,
    /// The line being typed before browsing started (Down past the newest
    /// entry brings it back).
    draft: Vec<u8>,
    keys: Decoder,
}

impl Editor {
    /// An editor for lines of at most `max_len` characters (further typing
    /// is dropped) that remembers the last `history_cap` lines. `prompt` is
    /// what the caller prints before each line; the editor prints it again
    /// only when it must redraw the whole line (after listing completions,
    /// Ctrl-L).
    pub fn new(prompt: &str, max_len: usize, history_cap: usize) -> Self {
        Editor {
            prompt: prompt.into(),
            buf: Vec::new(),
            cursor: 0,
            max_len,
            history: VecDeque::new(),
            history_cap,
            browsing: None,
            draft: Vec::new(),
            keys: Decoder::new(),
        }
    }

    /// The line as edited so far.
    pub fn line(&self) -> &str {
        // Only printable ASCII ever enters the buffer.
        core::str::from_utf8(&self.buf).unwrap_or("")
    }

    /// The cursor as an offset into [`Editor::line`] (0..=len).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Remembered lines, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.history.iter().map(String::as_str)
    }

    /// Feeds one input byte; terminal output goes to `out`.
    pub fn feed(&mut self, byte: u8, completer: &dyn Completer, out: &mut dyn Write) -> Outcome {
        match self.keys.feed(byte) {
            Some(key) => self.key(key, completer, out),
            None => Outcome::Pending,
        }
    }

    /// Applies one decoded key.
    pub fn key(&mut self, key: Key, completer: &dyn Completer, out: &mut dyn Write) -> Outcome {
        // A terminal write error cannot be reported anywhere useful; the
        // buffer stays right and the next redraw repairs the screen.
        let mut o = Out(out);
        match key {
            Key::Char(c) => {
                if self.buf.len() < self.max_len {
                    self.buf.insert(self.cursor, c);
                    self.cursor += 1;
                    if self.cursor == self.buf.len() {
                        o.byte(c);
                    } else {
                        self.refresh_from(self.cursor - 1, Erase::Keep, &mut o);
                    }
                }
            }
            Key::Enter => {
                o.right(self.buf.len() - self.cursor);
                o.str("\n");
                let line: String = self.buf.iter().map(|&b| b as char).collect();
                self.reset();
                self.remember(&line);
                return Outcome::Line(line);
            }
            Key::Cancel => {
                o.right(self.buf.len() - self.cursor);
                o.str("^C\n");
                self.reset();
                return Outcome::Cancelled;
            }
            Key::Backspace => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.buf.remove(self.cursor);
                    if self.cursor == self.buf.len() {
                        o.str("\x08 \x08");
                    } else {
                        o.left(1);
                        self.refresh_from(self.cursor, Erase::Rest, &mut o);
                    }
                }
            }
            Key::Delete => {
                if self.cursor < self.buf.len() {
                    self.buf.remove(self.cursor);
                    self.refresh_from(self.cursor, Erase::Rest, &mut o);
                }
            }
            Key::Left => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    o.left(1);
                }
            }
            Key::Right => {
                if self.cursor < self.buf.len() {
                    self.cursor += 1;
                    o.right(1);
                }
            }
            Key::Home => {
                o.left(self.cursor);
                self.cursor = 0;
            }
            Key::End => {
                o.right(self.buf.len() - self.cursor);
                self.cursor = self.buf.len();
            }
            Key::KillToStart => {
                o.left(self.cursor);
                self.buf.drain(..self.cursor);
                self.cursor = 0;
                self.refresh_from(0, Erase::Rest, &mut o);
            }
            Key::KillToEnd => {
                self.buf.truncate(self.cursor);
                o.str("\x1b[K");
            }
            Key::KillWord => {
                let mut start = self.cursor;
                while start > 0 && self.buf[start - 1] == b' ' {
                    start -= 1;
                }
                while start > 0 && self.buf[start - 1] != b' ' {
                    start -= 1;
                }
                if start < self.cursor {
                    o.left(self.cursor - start);
                    self.buf.drain(start..self.cursor);
                    self.cursor = start;
                    self.refresh_from(start, Erase::Rest, &mut o);
                }
            }
            Key::Up => {
                let next = self.browsing.map_or(0, |i| i + 1);
                if next < self.history.len() {
                    if self.browsing.is_none() {
                        self.draft = core::mem::take(&mut self.buf);
                    }
                    self.browsing = Some(next);
                    let entry = self.history[self.history.len() - 1 - next]
                        .as_bytes()
                        .to_vec();
                    self.replace(entry, &mut o);
                }
            }
            Key::Down => match self.browsing {
                Some(0) => {
                    self.browsing = None;
                    let draft = core::mem::take(&mut self.draft);
                    self.replace(draft, &mut o);
                }
                Some(i) => {
                    self.browsing = Some(i - 1);
                    let entry = self.history[self.history.len() - i].as_bytes().to_vec();
                    self.replace(entry, &mut o);
                }
                None => {}
            },
            Key::Tab => self.complete(completer, &mut o),
            Key::Redraw => {
                o.str("\x1b[2J\x1b[H");
                self.redraw_all(&mut o);
            }
            Key::Ignored => {}
        }
        Outcome::Pending
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
    }

    fn remember(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() || self.history_cap == 0 {
            return;
        }
        if self.history.back().map(String::as_str) == Some(line) {
            return;
        }
        if self.history.len() == self.history_cap {
            self.history.pop_front();
        }
        self.history.push_back(line.into());
    }

    /// Redraws from buffer offset `from` (where the terminal cursor is) to
    /// the end, erases what is left of the old line when it may have been
    /// longer (`Erase::Rest`), and puts the terminal cursor back at
    /// `self.cursor`.
    fn refresh_from(&self, from: usize, erase: Erase, o: &mut Out) {
        o.bytes(&self.buf[from..]);
        if erase == Erase::Rest {
            o.str("\x1b[K");
        }
        o.left(self.buf.len() - self.cursor);
    }

    /// Shows `new` instead of the current line, cursor at its end.
    fn replace(&mut self, mut new: Vec<u8>, o: &mut Out) {
        new.truncate(self.max_len);
        o.left(self.cursor);
        self.buf = new;
        self.cursor = self.buf.len();
        self.refresh_from(0, Erase::Rest, o);
    }

    /// Prompt and line from the start of a fresh terminal line.
    fn redraw_all(&self, o: &mut Out) {
        o.str(&self.prompt);
        self.refresh_from(0, Erase::Keep, o);
    }

    fn complete(&mut self, completer: &dyn Completer, o: &mut Out) {
        let start = self.buf[..self.cursor]
            .iter()
            .rposition(|&b| b == b' ')
            .map_or(0, |i| i + 1);
        let (head, prefix) = self.buf[..self.cursor].split_at(start);
        let (Ok(head), Ok(prefix)) = (core::str::from_utf8(head), core::str::from_utf8(prefix))
        else {
            return;
        };
        let before: Vec<&str> = head.split_ascii_whitespace().collect();
        let mut found: Vec<String> = Vec::new();
        completer.candidates(&before, &mut |w| {
            // Candidates are inserted into the line: printable ASCII only,
            // no spaces (they would split the word).
            if w.starts_with(prefix) && w.bytes().all(|b| (0x21..=0x7E).contains(&b)) {
                found.push(w.into());
            }
        });
        found.sort_unstable();
        found.dedup();
        let insert: Vec<u8> = match found.as_slice() {
            [] => return,
            [only] => {
                let mut s = only.as_bytes()[prefix.len()..].to_vec();
                if self.buf.get(self.cursor) != Some(&b' ') {
                    s.push(b' ');
                }
                s
            }
            [first, rest @ ..] => {
                let common = rest.iter().fold(first.len(), |n, w| {
                    first
                        .bytes()
                        .zip(w.bytes())
                        .take(n)
                        .take_while(|(a, b)| a == b)
                        .count()
                });
                if common > prefix.len() {
                    first.as_bytes()[prefix.len()..common].to_vec()
                } else {
                    self.list(&found, o);
                    return;
                }
            }
        };
        if self.buf.len() + insert.len() > self.max_len {
            return;
        }
        let at = self.cursor;
        self.buf.splice(at..at, insert.iter().copied());
        self.cursor += insert.len();
        self.refresh_from(at, Erase::Keep, o);
    }

    /// Lists candidates under the line, then draws prompt and line again.
    fn list(&self, words: &[String], o: &mut Out) {
        o.right(self.buf.len() - self.cursor);
        let mut col = 0;
        o.str("\n");
        for w in words {
            if col > 0 && col + 2 + w.len() > LIST_WIDTH {
                o.str("\n");
                col = 0;
            }
            if col > 0 {
                o.str("  ");
                col += 2;
            }
            o.str(w);
            col += w.len();
        }
        o.str("\n");
        self.redraw_all(o);
    }
}

/// Whether a redraw must erase beyond the new end of the line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Erase {
    /// The line only grew (or is drawn on a fresh row): nothing to erase.
    Keep,
    /// The old line may have been longer.
    Rest,
}

/// Terminal output helpers over the caller's writer.
struct Out<'a>(&'a mut dyn Write);

impl Out<'_> {
    fn str(&mut self, s: &str) {
        let _ = self.0.write_str(s);
    }

    fn byte(&mut self, b: u8) {
        let _ = self.0.write_char(b as char);
    }

    fn bytes(&mut self, b: &[u8]) {
        for &c in b {
            self.byte(c);
        }
    }

    fn left(&mut self, n: usize) {
        self.motion(n, 'D');
    }

    fn right(&mut self, n: usize) {
        self.motion(n, 'C');
    }

    fn motion(&mut self, n: usize, dir: char) {
        match n {
            0 => {}
            1 => {
                let _ = write!(self.0, "\x1b[{dir}");
            }
            n => {
                let _ = write!(self.0, "\x1b[{n}{dir}");
            }
        }
    }
}

impl fmt::Debug for Editor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Editor")
            .field("line", &self.line())
            .field("cursor", &self.cursor)
            .field("browsing", &self.browsing)
            .finish()
    }
}
