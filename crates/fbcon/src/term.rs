//! A text grid fed byte by byte, like a small VT100: printable ASCII,
//! CR, LF (which also returns the carriage, as the kernel's output expects),
//! BS, TAB, and the CSI sequences a line editor uses. Anything else is
//! consumed without showing garbage.
//!
//! Handled CSI finals: `A B C D` (cursor up/down/right/left), `G` (column),
//! `H f` (position), `J` (erase in display), `K` (erase in line), `m`
//! (colours: 0, 1, 22, 30–37, 39, 40–47, 49, 90–97, 100–107), `?25h/l`
//! (cursor on/off). Others are parsed and ignored.

use alloc::vec;
use alloc::vec::Vec;

/// Default colours: light grey on black (palette indices).
pub const DEFAULT_FG: u8 = 7;
pub const DEFAULT_BG: u8 = 0;

/// One character cell: an ASCII byte and palette indices (0–15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub ch: u8,
    pub fg: u8,
    pub bg: u8,
}

impl Cell {
    pub const fn blank(bg: u8) -> Cell {
        Cell {
            ch: b' ',
            fg: DEFAULT_FG,
            bg,
        }
    }
}

const MAX_PARAMS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    Csi,
    /// Inside a UTF-8 sequence: this many continuation bytes to swallow.
    Utf8(u8),
}

pub struct Terminal {
    cols: usize,
    rows: usize,
    cells: Vec<Cell>,
    /// Ring index of the first visible row: scrolling moves it, not the cells.
    top: usize,
    col: usize,
    row: usize,
    fg: u8,
    bg: u8,
    bold: bool,
    cursor_visible: bool,
    state: State,
    params: [u16; MAX_PARAMS],
    nparams: usize,
    private: bool,
    /// Lines scrolled off the top since creation.
    scrolled: u64,
}

impl Terminal {
    /// A blank `cols` x `rows` grid (each at least 1).
    pub fn new(cols: usize, rows: usize) -> Terminal {
        let (cols, rows) = (cols.max(1), rows.max(1));
        Terminal {
            cols,
            rows,
            cells: vec![Cell::blank(DEFAULT_BG); cols * rows],
            top: 0,
            col: 0,
            row: 0,
            fg: DEFAULT_FG,
            bg: DEFAULT_BG,
            bold: false,
            cursor_visible: true,
            state: State::Ground,
            params: [0; MAX_PARAMS],
            nparams: 0,
            private: false,
            scrolled: 0,
        }
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The cell at visible column `col`, row `row`.
    pub fn cell(&self, col: usize, row: usize) -> Cell {
        self.cells[self.index(col, row)]
    }

    /// The cursor's cell (column, row); `None` while hidden.
    pub fn cursor(&self) -> Option<(usize, usize)> {
        self.cursor_visible
            .then_some((self.col.min(self.cols - 1), self.row))
    }

    pub fn scrolled(&self) -> u64 {
        self.scrolled
    }

    /// One visible row as text, trailing blanks dropped (for tests and logs).
    pub fn row_text(&self, row: usize) -> alloc::string::String {
        let mut s: alloc::string::String = (0..self.cols)
            .map(|c| self.cell(c, row).ch as char)
            .collect();
        s.truncate(s.trim_end().len());
        s
    }

    fn index(&self, col: usize, row: usize) -> usize {
        ((self.top + row) % self.rows) * self.cols + col
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.feed(b);
        }
    }

    pub fn feed(&mut self, b: u8) {
        match self.state {
            State::Ground => self.ground(b),
            State::Utf8(n) => {
                if b & 0xC0 == 0x80 {
                    self.state = if n > 1 {
                        State::Utf8(n - 1)
                    } else {
                        State::Ground
                    };
                } else {
                    // A truncated sequence: this byte starts something new.
                    self.state = State::Ground;
                    self.ground(b);
                }
            }
            State::Esc => {
                if b == b'[' {
                    self.state = State::Csi;
                    self.params = [0; MAX_PARAMS];
                    self.nparams = 0;
                    self.private = false;
                } else if b < 0x20 {
                    self.state = State::Ground;
                    self.ground(b);
                } else {
                    // Two-byte sequences (ESC 7, ESC c, ...): not supported, dropped.
                    self.state = State::Ground;
                }
            }
            State::Csi => self.csi(b),
        }
    }

    fn ground(&mut self, b: u8) {
        match b {
            b'\n' => {
                self.col = 0;
                self.line_feed();
            }
            b'\r' => self.col = 0,
            0x08 => self.col = self.col.min(self.cols - 1).saturating_sub(1),
            b'\t' => {
                let next = (self.col / 8 + 1) * 8;
                self.col = next.min(self.cols - 1);
            }
            0x1B => self.state = State::Esc,
            0x20..=0x7E => self.put(b),
            // UTF-8 lead bytes: one replacement glyph per character.
            0xC0..=0xF7 => {
                self.put(b'?');
                let n = match b {
                    0xC0..=0xDF => 1,
                    0xE0..=0xEF => 2,
                    _ => 3,
                };
                self.state = State::Utf8(n);
            }
            0x80..=0xBF | 0xF8..=0xFF => self.put(b'?'),
            _ => {} // other C0 controls and DEL: nothing to show
        }
    }

    fn put(&mut self, ch: u8) {
        if self.col >= self.cols {
            // Deferred wrap: the previous character filled the last column.
            self.col = 0;
            self.line_feed();
        }
        let fg = if self.bold && self.fg < 8 {
            self.fg + 8
        } else {
            self.fg
        };
        let i = self.index(self.col, self.row);
        self.cells[i] = Cell {
            ch,
            fg,
            bg: self.bg,
        };
        self.col += 1;
    }

    fn line_feed(&mut self) {
        if self.row + 1 < self.rows {
            self.row += 1;
        } else {
            self.top = (self.top + 1) % self.rows;
            self.scrolled += 1;
            let start = self.index(0, self.rows - 1);
            let bg = self.bg;
            self.cells[start..start + self.cols].fill(Cell::blank(bg));
        }
    }

    fn csi(&mut self, b: u8) {
        match b {
            b'0'..=b'9' => {
                if self.nparams == 0 {
                    self.nparams = 1;
                }
                if let Some(p) = self.params.get_mut(self.nparams - 1) {
                    *p = p
                        .saturating_mul(10)
                        .saturating_add((b - b'0') as u16)
                        .min(9999);
                }
            }
            b';' => {
                if self.nparams == 0 {
                    self.nparams = 1;
                }
                self.nparams = (self.nparams + 1).min(MAX_PARAMS + 1);
            }
            b'?' => self.private = true,
            0x20..=0x2F | 0x3C..=0x3E => {} // intermediates and other markers
            0x40..=0x7E => {
                self.state = State::Ground;
                self.dispatch(b);
            }
            _ => {
                // A control byte inside a sequence cancels it and acts normally.
                self.state = State::Ground;
                self.ground(b);
            }
        }
    }

    fn param(&self, i: usize, default: u16) -> u16 {
        if i < self.nparams.min(MAX_PARAMS) && self.params[i] != 0 {
            self.params[i]
        } else {
            default
        }
    }

    fn erase(&mut self, row: usize, from: usize, to: usize) {
        let bg = self.bg;
        for c in from..to.min(self.cols) {
            let i = self.index(c, row);
            self.cells[i] = Cell::blank(bg);
        }
    }

    fn dispatch(&mut self, fin: u8) {
        let n = self.param(0, 1) as usize;
        let col = self.col.min(self.cols - 1);
        match fin {
            b'A' => self.row = self.row.saturating_sub(n),
            b'B' => self.row = (self.row + n).min(self.rows - 1),
            b'C' => self.col = (col + n).min(self.cols - 1),
            b'D' => self.col = col.saturating_sub(n),
            b'G' => self.col = (n - 1).min(self.cols - 1),
            b'H' | b'f' => {
                self.row = (n - 1).min(self.rows - 1);
                self.col = (self.param(1, 1) as usize - 1).min(self.cols - 1);
            }
            b'K' => match self.param(0, 0) {
                0 => self.erase(self.row, col, self.cols),
                1 => self.erase(self.row, 0, col + 1),
                2 => self.erase(self.row, 0, self.cols),
                _ => {}
            },
            b'J' => match self.param(0, 0) {
                0 => {
                    self.erase(self.row, col, self.cols);
                    for r in self.row + 1..self.rows {
                        self.erase(r, 0, self.cols);
                    }
                }
                1 => {
                    for r in 0..self.row {
                        self.erase(r, 0, self.cols);
                    }
                    self.erase(self.row, 0, col + 1);
                }
                2 | 3 => {
                    for r in 0..self.rows {
                        self.erase(r, 0, self.cols);
                    }
                }
                _ => {}
            },
            b'm' => self.sgr(),
            b'h' | b'l' if self.private && self.param(0, 0) == 25 => {
                self.cursor_visible = fin == b'h';
            }
            _ => {}
        }
    }

    fn sgr(&mut self) {
        let count = self.nparams.clamp(1, MAX_PARAMS);
        for i in 0..count {
            match self.params[i] {
                0 => {
                    self.fg = DEFAULT_FG;
                    self.bg = DEFAULT_BG;
                    self.bold = false;
                }
                1 => self.bold = true,
                22 => self.bold = false,
                p @ 30..=37 => self.fg = (p - 30) as u8,
                39 => self.fg = DEFAULT_FG,
                p @ 40..=47 => self.bg = (p - 40) as u8,
                49 => self.bg = DEFAULT_BG,
                p @ 90..=97 => self.fg = (p - 90 + 8) as u8,
                p @ 100..=107 => self.bg = (p - 100 + 8) as u8,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(cols: usize, rows: usize, input: &[u8]) -> Terminal {
        let mut t = Terminal::new(cols, rows);
        t.write(input);
        t
    }

    fn rows(t: &Terminal) -> Vec<String> {
        (0..t.rows()).map(|r| t.row_text(r)).collect()
    }

    #[test]
    fn text_newlines_and_carriage_return() {
        let t = term(10, 3, b"hello\nworld\rW");
        assert_eq!(rows(&t), ["hello", "World", ""]);
        assert_eq!(t.cursor(), Some((1, 1)));
    }

    #[test]
    fn scrolling_drops_the_top_line() {
        let t = term(10, 3, b"1\n2\n3\n4\n5");
        assert_eq!(rows(&t), ["3", "4", "5"]);
        assert_eq!(t.scrolled(), 2);
        assert_eq!(t.cursor(), Some((1, 2)));
    }

    #[test]
    fn long_lines_wrap_only_when_the_next_character_comes() {
        let t = term(4, 3, b"abcd");
        assert_eq!(rows(&t), ["abcd", "", ""]);
        assert_eq!(t.cursor(), Some((3, 0)), "cursor parks on the last column");
        let t = term(4, 3, b"abcdef");
        assert_eq!(rows(&t), ["abcd", "ef", ""]);
        // a newline right after a full line does not leave an empty line
        let t = term(4, 3, b"abcd\nx");
        assert_eq!(rows(&t), ["abcd", "x", ""]);
    }

    #[test]
    fn backspace_space_backspace_erases_like_the_shell_does() {
        let t = term(10, 2, b"upx\x08 \x08time");
        assert_eq!(rows(&t), ["uptime", ""]);
        let t = term(10, 2, b"\x08\x08a");
        assert_eq!(rows(&t), ["a", ""], "backspace stops at column 0");
    }

    #[test]
    fn csi_cursor_moves_and_erase_in_line() {
        // "busmaster> abcdef", cursor left 3, erase to end: "abc" stays.
        let t = term(30, 2, b"busmaster> abcdef\x1b[3D\x1b[K");
        assert_eq!(rows(&t), ["busmaster> abc", ""]);
        assert_eq!(t.cursor(), Some((14, 0)));
        // CR then cursor right 11 then insert text over the rest
        let t = term(30, 2, b"busmaster> abcdef\r\x1b[11CXY\x1b[0K");
        assert_eq!(rows(&t), ["busmaster> XY", ""]);
        let t = term(10, 2, b"abcdef\x1b[3D\x1b[1K");
        assert_eq!(rows(&t), ["    ef", ""]);
        let t = term(10, 2, b"abcdef\x1b[2K!");
        assert_eq!(rows(&t), ["      !", ""]);
        // moves clamp at the edges
        let t = term(5, 3, b"\x1b[99C\x1b[99Bx\x1b[99A\x1b[99Dy");
        assert_eq!(rows(&t), ["y", "", "    x"]);
    }

    #[test]
    fn cursor_position_and_erase_display() {
        let t = term(10, 3, b"aaa\nbbb\nccc\x1b[2;2Hx\x1b[J");
        assert_eq!(rows(&t), ["aaa", "bx", ""]);
        let t = term(10, 3, b"aaa\nbbb\nccc\x1b[2J");
        assert_eq!(rows(&t), ["", "", ""]);
        let t = term(10, 3, b"aaa\nbbb\nccc\x1b[H\x1b[5Gz");
        assert_eq!(rows(&t), ["aaa z", "bbb", "ccc"]);
    }

    #[test]
    fn unknown_sequences_and_binary_show_no_garbage() {
        let t = term(
            20,
            2,
            b"a\x1b[?1049hb\x1b[38;5;196mc\x1b]d\x1b7e\x07\x00f\x7f",
        );
        // ESC ] and ESC 7 drop their second byte; ESC[38;5;196m is parsed whole.
        assert_eq!(rows(&t), ["abcdef", ""]);
        // UTF-8: one '?' per character, continuation bytes swallowed
        let t = term(20, 2, "x\u{2014}y\u{e9}z".as_bytes());
        assert_eq!(rows(&t), ["x?y?z", ""]);
        // absurd parameters saturate instead of overflowing
        let t = term(
            5,
            2,
            b"\x1b[99999999999999;99999999999999Hq\x1b[1;2;3;4;5;6;7;8;9;10;11m",
        );
        assert_eq!(rows(&t), ["", "    q"]);
        // a control byte inside a sequence cancels it and acts
        let t = term(10, 2, b"ab\x1b[3\ncd");
        assert_eq!(rows(&t), ["ab", "cd"]);
    }

    #[test]
    fn colours_and_bold() {
        let t = term(10, 1, b"\x1b[31ma\x1b[1;44mb\x1b[0mc\x1b[92;101md");
        assert_eq!(
            t.cell(0, 0),
            Cell {
                ch: b'a',
                fg: 1,
                bg: 0
            }
        );
        assert_eq!(
            t.cell(1, 0),
            Cell {
                ch: b'b',
                fg: 9,
                bg: 4
            }
        );
        assert_eq!(
            t.cell(2, 0),
            Cell {
                ch: b'c',
                fg: DEFAULT_FG,
                bg: DEFAULT_BG
            }
        );
        assert_eq!(
            t.cell(3, 0),
            Cell {
                ch: b'd',
                fg: 10,
                bg: 9
            }
        );
    }

    #[test]
    fn cursor_can_be_hidden() {
        let mut t = term(10, 1, b"\x1b[?25l");
        assert_eq!(t.cursor(), None);
        t.write(b"\x1b[?25h");
        assert_eq!(t.cursor(), Some((0, 0)));
    }

    #[test]
    fn tabs_stop_every_eight_columns() {
        let t = term(20, 1, b"a\tb\tc");
        assert_eq!(rows(&t), ["a       b       c"]);
    }
}
