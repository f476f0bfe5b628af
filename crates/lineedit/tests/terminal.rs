//! The editor against a small VT100 screen model: after every byte the
//! screen's current row must read prompt + line and the terminal cursor must
//! sit where the editor's cursor is.

use lineedit::{Completer, Editor, Outcome, Words};
use proptest::prelude::*;

const PROMPT: &str = "bm> ";

/// Just enough of a VT100 for what the editor emits: printable characters,
/// BS, CR, LF (as CR LF, like the kernel's serial writer), `ESC [ n C/D`,
/// `ESC [ K`, `ESC [ 2 J`, `ESC [ H`. Anything else fails the test.
#[derive(Default)]
struct Screen {
    rows: Vec<Vec<u8>>,
    row: usize,
    col: usize,
}

impl Screen {
    fn put(&mut self, out: &str) {
        let b = out.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if self.rows.len() <= self.row {
                self.rows.resize(self.row + 1, Vec::new());
            }
            match b[i] {
                0x20..=0x7E => {
                    let line = &mut self.rows[self.row];
                    if line.len() <= self.col {
                        line.resize(self.col + 1, b' ');
                    }
                    line[self.col] = b[i];
                    self.col += 1;
                }
                0x08 => self.col = self.col.saturating_sub(1),
                b'\r' => self.col = 0,
                b'\n' => {
                    self.row += 1;
                    self.col = 0;
                }
                0x1B => {
                    assert_eq!(b.get(i + 1), Some(&b'['), "unknown escape in {out:?}");
                    let mut j = i + 2;
                    let mut n = 0usize;
                    let mut digits = false;
                    while b[j].is_ascii_digit() {
                        n = n * 10 + usize::from(b[j] - b'0');
                        digits = true;
                        j += 1;
                    }
                    let n1 = if digits { n } else { 1 };
                    match b[j] {
                        b'C' => self.col += n1,
                        b'D' => {
                            assert!(n1 <= self.col, "cursor left past column 0 in {out:?}");
                            self.col -= n1;
                        }
                        b'K' => {
                            assert!(!digits, "only ESC [ K (erase right) is expected");
                            self.rows[self.row].truncate(self.col);
                        }
                        b'J' => {
                            assert_eq!(n, 2);
                            self.rows.clear();
                            self.rows.push(Vec::new());
                            self.row = 0;
                        }
                        b'H' => {
                            self.row = 0;
                            self.col = 0;
                        }
                        other => panic!("unexpected CSI final {:?} in {out:?}", other as char),
                    }
                    i = j;
                }
                other => panic!("unexpected byte {other:#04x} in {out:?}"),
            }
            i += 1;
        }
        if self.rows.len() <= self.row {
            self.rows.resize(self.row + 1, Vec::new());
        }
    }

    /// The current row without trailing blanks.
    fn current(&self) -> String {
        let s = String::from_utf8(self.rows[self.row].clone()).unwrap();
        s.trim_end().to_string()
    }
}

/// A shell's worth of completion: commands, and subcommands for two of them.
struct Shell;

const COMMANDS: &[&str] = &[
    "help", "meminfo", "dma", "dmar", "dmabench", "dmesg", "edu", "iommu", "uptime",
];

impl Completer for Shell {
    fn candidates(&self, before: &[&str], add: &mut dyn FnMut(&str)) {
        match before {
            [] => COMMANDS.iter().for_each(|c| add(c)),
            ["edu"] => ["info", "dma"].iter().for_each(|c| add(c)),
            ["iommu"] => ["domains", "faults", "translate"]
                .iter()
                .for_each(|c| add(c)),
            ["help"] => COMMANDS.iter().for_each(|c| add(c)),
            _ => {}
        }
    }
}

struct Session {
    ed: Editor,
    screen: Screen,
    lines: Vec<String>,
    cancelled: usize,
}

impl Session {
    fn new() -> Session {
        Session::with(Editor::new(PROMPT, 40, 4))
    }

    fn with(ed: Editor) -> Session {
        let mut screen = Screen::default();
        screen.put(PROMPT);
        Session {
            ed,
            screen,
            lines: Vec::new(),
            cancelled: 0,
        }
    }

    /// Types `bytes`, checking the screen after each one; like the shell,
    /// prints the prompt again after a line or Ctrl-C.
    fn type_bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            let mut out = String::new();
            let outcome = self.ed.feed(b, &Shell, &mut out);
            self.screen.put(&out);
            match outcome {
                Outcome::Pending => {}
                Outcome::Line(l) => {
                    self.lines.push(l);
                    self.screen.put(PROMPT);
                }
                Outcome::Cancelled => {
                    self.cancelled += 1;
                    self.screen.put(PROMPT);
                }
            }
            self.check();
        }
        self
    }

    fn check(&self) {
        let want = format!("{PROMPT}{}", self.ed.line());
        assert_eq!(self.screen.current(), want.trim_end(), "screen vs buffer");
        assert_eq!(
            self.screen.col,
            PROMPT.len() + self.ed.cursor(),
            "terminal cursor vs editor cursor on {:?}",
            self.ed
        );
        assert!(self.ed.cursor() <= self.ed.line().len());
    }
}

fn typed(bytes: &[u8]) -> Session {
    let mut s = Session::new();
    s.type_bytes(bytes);
    s
}

const UP: &[u8] = b"\x1b[A";
const DOWN: &[u8] = b"\x1b[B";
const LEFT: &[u8] = b"\x1b[D";
const RIGHT: &[u8] = b"\x1b[C";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn plain_typing_echoes_exactly_the_input() {
    let mut ed = Editor::new(PROMPT, 40, 4);
    let mut out = String::new();
    for &b in b"meminfo\n" {
        ed.feed(b, &(), &mut out);
    }
    assert_eq!(
        out, "meminfo\n",
        "a piped transcript must read like the input"
    );
}

#[test]
fn completion_at_the_end_echoes_just_the_completed_text() {
    let mut ed = Editor::new(PROMPT, 40, 4);
    let mut out = String::new();
    for &b in b"mem\t\n" {
        ed.feed(b, &Words(COMMANDS), &mut out);
    }
    assert_eq!(out, "meminfo \n");
}

#[test]
fn lines_end_on_cr_lf_and_crlf() {
    let s = typed(b"a\rb\nc\r\nd\n");
    assert_eq!(s.lines, ["a", "b", "c", "d"]);
}

#[test]
fn backspace_at_the_end_and_in_the_middle() {
    assert_eq!(typed(b"helq\x7fp\n").lines, ["help"]);
    assert_eq!(typed(b"ab\x08\x08\x08cd\r\n").lines, ["cd"]);
    // "abc", cursor after 'a', BS -> "bc".
    let s = typed(&cat(&[b"abc", LEFT, LEFT, b"\x7f\n"]));
    assert_eq!(s.lines, ["bc"]);
}

#[test]
fn insert_in_the_middle_with_arrows() {
    let s = typed(&cat(&[b"mminfo", LEFT, LEFT, LEFT, LEFT, LEFT, b"e\n"]));
    assert_eq!(s.lines, ["meminfo"]);
    // Right past the end stops at the end.
    let s = typed(&cat(&[b"ab", LEFT, RIGHT, RIGHT, RIGHT, b"c\n"]));
    assert_eq!(s.lines, ["abc"]);
    // Left past the start stops at the start.
    let s = typed(&cat(&[b"b", LEFT, LEFT, LEFT, b"a\n"]));
    assert_eq!(s.lines, ["ab"]);
}

#[test]
fn home_end_and_their_control_keys() {
    assert_eq!(typed(b"uptime\x01x\x05y\n").lines, ["xuptimey"]);
    assert_eq!(typed(b"bc\x1b[Ha\x1b[Fd\n").lines, ["abcd"]);
    assert_eq!(typed(b"bc\x1b[1~a\x1b[4~d\n").lines, ["abcd"]);
}

#[test]
fn delete_kill_and_word_erase() {
    // Delete under the cursor.
    assert_eq!(
        typed(&cat(&[b"abxc", LEFT, LEFT, b"\x1b[3~\n"])).lines,
        ["abc"]
    );
    // Delete at the end does nothing.
    assert_eq!(typed(b"ab\x1b[3~\n").lines, ["ab"]);
    // Ctrl-U erases up to the cursor, Ctrl-K from it.
    assert_eq!(
        typed(&cat(&[b"junk edu", LEFT, LEFT, LEFT, b"\x15\n"])).lines,
        ["edu"]
    );
    assert_eq!(
        typed(&cat(&[
            b"edu junk",
            LEFT,
            LEFT,
            LEFT,
            LEFT,
            LEFT,
            b"\x0b\n"
        ]))
        .lines,
        ["edu"]
    );
    // Ctrl-W erases the word before the cursor and the blanks after it.
    assert_eq!(typed(b"edu info  \x17dma\n").lines, ["edu dma"]);
}

#[test]
fn ctrl_c_drops_the_line() {
    let s = typed(b"x\x03y\n");
    assert_eq!(s.lines, ["y"]);
    assert_eq!(s.cancelled, 1);
    // With the cursor in the middle, ^C is still written after the text.
    let s = typed(&cat(&[b"abc", LEFT, LEFT, b"\x03"]));
    assert!(s.screen.rows[0].starts_with(b"bm> abc^C"));
}

#[test]
fn overlong_lines_are_capped() {
    let long = [b'a'; 100];
    let s = typed(&cat(&[&long, b"\n"]));
    assert_eq!(s.lines[0].len(), 40);
}

#[test]
fn history_up_down_and_the_draft() {
    let mut s = typed(b"one\ntwo\nthree\n");
    s.type_bytes(b"dra");
    s.type_bytes(UP);
    assert_eq!(s.ed.line(), "three");
    s.type_bytes(UP).type_bytes(UP);
    assert_eq!(s.ed.line(), "one");
    // Up at the oldest entry stays there.
    s.type_bytes(UP);
    assert_eq!(s.ed.line(), "one");
    s.type_bytes(DOWN);
    assert_eq!(s.ed.line(), "two");
    s.type_bytes(DOWN).type_bytes(DOWN);
    assert_eq!(
        s.ed.line(),
        "dra",
        "Down past the newest entry restores the draft"
    );
    s.type_bytes(DOWN);
    assert_eq!(s.ed.line(), "dra");
    // A recalled line can be edited and run.
    s.type_bytes(UP).type_bytes(b"s\n");
    assert_eq!(s.lines.last().unwrap(), "threes");
    assert_eq!(
        s.ed.history().collect::<Vec<_>>(),
        ["one", "two", "three", "threes"]
    );
}

#[test]
fn history_skips_blanks_and_repeats_and_forgets_the_oldest() {
    let s = typed(b"a\n\n   \na\nb\nc\nd\ne\n");
    // Capacity 4: "a" fell out; the repeated "a" and blank lines never entered.
    assert_eq!(s.ed.history().collect::<Vec<_>>(), ["b", "c", "d", "e"]);
    let s = typed(b"  uptime  \n");
    assert_eq!(s.ed.history().collect::<Vec<_>>(), ["uptime"]);
    assert_eq!(
        s.lines,
        ["  uptime  "],
        "the line itself is passed on as typed"
    );
}

#[test]
fn up_arrow_reruns_the_previous_command() {
    let s = typed(&cat(&[b"uptime\n", UP, b"\n"]));
    assert_eq!(s.lines, ["uptime", "uptime"]);
    // Ctrl-P is Up as well.
    let s = typed(b"uptime\n\x10\n");
    assert_eq!(s.lines, ["uptime", "uptime"]);
    // With no history, Up does nothing.
    let s = typed(&cat(&[UP, b"x\n"]));
    assert_eq!(s.lines, ["x"]);
}

#[test]
fn tab_completes_a_unique_command_and_adds_a_space() {
    let s = typed(b"mem\t\n");
    assert_eq!(s.lines, ["meminfo "]);
    let s = typed(b"upt\targs\n");
    assert_eq!(s.lines, ["uptime args"]);
}

#[test]
fn tab_extends_to_the_common_prefix_then_lists() {
    let mut s = typed(b"dm\t");
    // dma, dmabench, dmar, dmesg: nothing common beyond "dm" -> list.
    assert_eq!(s.ed.line(), "dm");
    let listing = String::from_utf8(s.screen.rows[1].clone()).unwrap();
    assert_eq!(listing, "dma  dmabench  dmar  dmesg");
    assert_eq!(
        s.screen.row, 2,
        "prompt and line drawn again below the list"
    );
    s.type_bytes(b"ab\t");
    // "dmab" is unique.
    assert_eq!(s.ed.line(), "dmabench ");
    // Every command starting with "d" starts with "dm": extend, no list.
    let s = typed(b"d\t");
    assert_eq!(s.ed.line(), "dm");
    assert_eq!(s.screen.row, 0);
    // "dma" is a command and a prefix of others: extend to it, no space.
    let s = typed(b"dma\x7f\t");
    assert_eq!(s.ed.line(), "dm");
    let s = typed(b"io\t");
    assert_eq!(s.ed.line(), "iommu ");
}

#[test]
fn tab_completes_subcommands_and_help_topics() {
    assert_eq!(typed(b"edu i\t\n").lines, ["edu info "]);
    assert_eq!(typed(b"iommu t\t\n").lines, ["iommu translate "]);
    assert_eq!(typed(b"help ed\t\n").lines, ["help edu "]);
    // Nothing is known after a subcommand: Tab leaves the line alone.
    assert_eq!(typed(b"edu info x\t\n").lines, ["edu info x"]);
    // An empty line lists all commands.
    let s = typed(b"\t");
    assert!(String::from_utf8(s.screen.rows[1].clone())
        .unwrap()
        .starts_with("dma  dmabench"));
}

#[test]
fn tab_in_the_middle_of_a_line_completes_before_the_cursor() {
    let s = typed(&cat(&[b"mem info", LEFT, LEFT, LEFT, LEFT, LEFT, b"\t\n"]));
    assert_eq!(
        s.lines,
        ["meminfo info"],
        "no second space before an existing one"
    );
}

#[test]
fn tab_never_overflows_the_line() {
    let mut ed = Editor::new(PROMPT, 5, 4);
    let mut out = String::new();
    for &b in b"mem\t" {
        ed.feed(b, &Words(COMMANDS), &mut out);
    }
    assert_eq!(ed.line(), "mem", "'meminfo ' does not fit 5 characters");
}

#[test]
fn unknown_keys_change_nothing() {
    // F1, F5, Insert, PgUp, a stray ESC before a letter.
    let s = typed(b"ab\x1bOP\x1b[15~\x1b[2~\x1b[5~c\x1bd\n");
    assert_eq!(s.lines, ["abcd"]);
}

#[test]
fn ctrl_l_redraws_prompt_and_line() {
    let s = typed(&cat(&[b"abc", LEFT, b"\x0c"]));
    assert_eq!(s.screen.row, 0);
    assert_eq!(s.screen.current(), "bm> abc");
}

/// Bytes a user (or line noise) might send: text, control keys, and whole
/// and partial escape sequences.
fn input_byte_chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let chunk = prop_oneof![
        4 => proptest::sample::select(b"abdemu -".to_vec()).prop_map(|b| vec![b]),
        1 => (0u8..=255).prop_map(|b| vec![b]),
        1 => proptest::sample::select(vec![
            b"\x1b[A".to_vec(),
            b"\x1b[B".to_vec(),
            b"\x1b[C".to_vec(),
            b"\x1b[D".to_vec(),
            b"\x1b[H".to_vec(),
            b"\x1b[F".to_vec(),
            b"\x1b[3~".to_vec(),
            b"\x1bOA".to_vec(),
            b"\x1b[1;5C".to_vec(),
            b"\x1b[".to_vec(),
            b"\x1b".to_vec(),
            b"\t".to_vec(),
            b"\x7f".to_vec(),
            b"\x01".to_vec(),
            b"\x05".to_vec(),
            b"\x0b".to_vec(),
            b"\x15".to_vec(),
            b"\x17".to_vec(),
            b"\r".to_vec(),
            b"\n".to_vec(),
        ]),
    ];
    proptest::collection::vec(chunk, 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever arrives, nothing panics, the cursor stays inside the line,
    /// the line stays printable and short enough, and the screen shows
    /// exactly prompt + line with the terminal cursor at the editor's.
    #[test]
    fn any_input_keeps_screen_and_buffer_in_step(chunks in input_byte_chunks()) {
        let mut s = Session::new();
        // A 0x0c (Ctrl-L) clears the screen; the model handles that too.
        for c in &chunks {
            s.type_bytes(c);
            prop_assert!(s.ed.line().len() <= 40);
            prop_assert!(s.ed.line().bytes().all(|b| (0x20..=0x7e).contains(&b)));
        }
        for l in &s.lines {
            prop_assert!(l.len() <= 40);
        }
        prop_assert!(s.ed.history().count() <= 4);
    }

    /// Typing printable text and Enter, in any chunking, gives back the text.
    #[test]
    fn printable_lines_come_back_unchanged(lines in proptest::collection::vec("[ -~]{0,40}", 1..8)) {
        let mut input = Vec::new();
        for l in &lines {
            input.extend_from_slice(l.as_bytes());
            input.push(b'\n');
        }
        let s = typed(&input);
        prop_assert_eq!(&s.lines, &lines);
    }
}
