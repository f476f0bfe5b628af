//! Running QEMU with the serial port on pipes: feeding input once the shell is
//! ready, watching output, and ending QEMU when it is done, idle or hung.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::profile::{qemu_args, Firmware, Images, Launch, Ovmf};

pub const PROMPT: &[u8] = b"busmaster> ";
pub const PROMPT_STR: &str = "busmaster> ";
/// How long the runner waits for something that normally takes seconds (a
/// prompt, a line of output, a boot's first words): only an event that never
/// comes reaches it, even on a slow host whose CPUs are busy with other work.
/// A hang costs this much time; a slow machine never fails a test.
pub const EVENT: Duration = Duration::from_secs(120);
/// The longest one QEMU session of the test tiers may run in all.
pub const SESSION: Duration = Duration::from_secs(600);
pub const BOOT_IDLE: Duration = EVENT;

impl Limits {
    /// The test tiers' limits: [`EVENT`] of silence or [`SESSION`] in all.
    pub fn generous() -> Limits {
        Limits {
            idle: EVENT,
            idle_after: None,
            overall: SESSION,
        }
    }
}

pub fn qemu_binary() -> String {
    std::env::var("BUSMASTER_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

pub enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Input(Vec<u8>),
    InputEof,
}

/// A per-run copy of the UEFI variable store, removed on drop.
struct VarsCopy(PathBuf);

impl Drop for VarsCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Event>,
    tx: Sender<Event>,
    _vars: Option<VarsCopy>,
}

fn pump(mut from: impl Read + Send + 'static, tx: Sender<Event>, wrap: fn(Vec<u8>) -> Event) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(wrap(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

impl Session {
    pub fn spawn(launch: &Launch, images: &Images) -> Result<Session, String> {
        if launch.profile.floppy {
            crate::profile::ensure_floppy_image(&images.floppy)?;
        }
        if launch.profile.nvme {
            crate::profile::ensure_nvme_image(&images.nvme)?;
        }
        crate::profile::ensure_storage_images(launch.profile.name, images)?;
        let mut ovmf = None;
        let mut vars = None;
        if launch.firmware == Firmware::Uefi {
            let fw = Ovmf::locate()?;
            static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("busmaster-vars-{}-{n}.fd", std::process::id()));
            std::fs::copy(&fw.vars_template, &path).map_err(|e| {
                format!(
                    "copying {} to {}: {e}",
                    fw.vars_template.display(),
                    path.display()
                )
            })?;
            vars = Some(VarsCopy(path));
            ovmf = Some(fw);
        }
        let args = qemu_args(
            launch,
            images,
            ovmf.as_ref(),
            vars.as_ref().map(|v| v.0.as_path()),
        );
        let mut child = Command::new(qemu_binary())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (is QEMU installed? ./run.sh installs it)",
                    qemu_binary()
                )
            })?;
        let (tx, rx) = channel();
        if let Some(out) = child.stdout.take() {
            pump(out, tx.clone(), Event::Stdout);
        }
        if let Some(err) = child.stderr.take() {
            pump(err, tx.clone(), Event::Stderr);
        }
        let stdin = child.stdin.take();
        Ok(Session {
            child,
            stdin,
            rx,
            tx,
            _vars: vars,
        })
    }

    /// A sender for input events (a thread reading our stdin, or a test).
    pub fn input_sender(&self) -> Sender<Event> {
        self.tx.clone()
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Some(stdin) = self.stdin.as_mut() {
            if stdin.write_all(bytes).and_then(|_| stdin.flush()).is_err() {
                self.stdin = None;
            }
        }
    }

    fn try_wait(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.code().unwrap_or(-1)),
            _ => None,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.kill();
        }
    }
}

/// Counts prompts in a byte stream that arrives in arbitrary chunks.
#[derive(Default)]
pub struct PromptCounter {
    tail: Vec<u8>,
    pub count: usize,
}

impl PromptCounter {
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut found = 0;
        for &b in bytes {
            self.tail.push(b);
            if self.tail.len() > PROMPT.len() {
                self.tail.remove(0);
            }
            if self.tail == PROMPT {
                found += 1;
            }
        }
        self.count += found;
        found
    }
}

/// Lines of input in `bytes` as the kernel's line editor counts them: LF, CR,
/// and CR LF each end one line; Ctrl-C drops one (the shell then prompts
/// again too).
pub fn count_lines(bytes: &[u8], last_was_cr: &mut bool) -> usize {
    let mut n = 0;
    for &b in bytes {
        match b {
            b'\n' if *last_was_cr => {}
            b'\n' | b'\r' | 0x03 => n += 1,
            _ => {}
        }
        *last_was_cr = b == b'\r';
    }
    n
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// QEMU exited by itself with this status.
    Exited(i32),
    /// All input was consumed and the shell waited at its prompt: we ended QEMU.
    InputDone,
    /// No output for this long: we ended QEMU.
    Idle(Duration),
    /// The overall limit passed: we ended QEMU.
    Overall(Duration),
}

impl End {
    pub fn describe(&self) -> String {
        match self {
            End::Exited(s) => format!(
                "QEMU exited with status {s} ({})",
                crate::profile::exit_meaning(*s).1
            ),
            End::InputDone => "input ended without 'poweroff'; the runner stopped QEMU".into(),
            End::Idle(d) => format!("timed out: no output for {} s", d.as_secs()),
            End::Overall(d) => format!("timed out: still running after {} s", d.as_secs()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest stretch without output before QEMU is ended.
    pub idle: Duration,
    /// When set, `idle` applies only once this text has appeared (e.g. a
    /// test's start line); before that the boot may be quiet for up to
    /// [`BOOT_IDLE`] (firmware is silent for a while, longer on a busy host).
    pub idle_after: Option<&'static str>,
    /// Longest run in all.
    pub overall: Duration,
}

pub struct Transcript {
    /// Everything QEMU printed (stdout and stderr), lossily decoded.
    pub text: String,
    pub end: End,
    pub elapsed: Duration,
    /// From QEMU start to the first shell prompt.
    pub first_prompt: Option<Duration>,
}

/// QEMU's stdout (the serial console) and stderr (its own warnings) merged into
/// one text in which every stderr line stands whole on a line of its own: the
/// two pipes are read by separate threads, so a warning could otherwise land
/// inside a console line, and QEMU writes its `qemu-system-x86_64:` prefix and
/// the message as separate chunks, so a console line could land after the
/// prefix. Stderr is held until it has whole lines and the console is at a
/// line start; the console itself is never held (the prompt has no newline).
#[derive(Default)]
struct Merged {
    text: Vec<u8>,
    held: Vec<u8>,
}

impl Merged {
    /// Adds QEMU's output (input events are ignored), echoed to our own
    /// stdout or stderr as it came when `echo`.
    fn take(&mut self, ev: &Event, echo: bool) {
        match ev {
            Event::Stdout(b) => {
                if echo {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(b);
                    let _ = out.flush();
                }
                self.stdout(b);
            }
            Event::Stderr(b) => {
                if echo {
                    let _ = std::io::stderr().write_all(b);
                }
                self.stderr(b);
            }
            Event::Input(_) | Event::InputEof => {}
        }
    }

    fn at_line_start(&self) -> bool {
        self.text.is_empty() || self.text.ends_with(b"\n")
    }

    fn stdout(&mut self, b: &[u8]) {
        for seg in b.split_inclusive(|&c| c == b'\n') {
            self.text.extend_from_slice(seg);
            self.place_held();
        }
    }

    fn stderr(&mut self, b: &[u8]) {
        self.held.extend_from_slice(b);
        self.place_held();
    }

    /// Moves the held whole stderr lines into the text if the console is at
    /// a line start; a partial stderr line stays held.
    fn place_held(&mut self) {
        if let (true, Some(last)) = (
            self.at_line_start(),
            self.held.iter().rposition(|&c| c == b'\n'),
        ) {
            self.text.extend(self.held.drain(..=last));
        }
    }

    /// Everything, what is held last (on a line of its own).
    fn finish(mut self) -> Vec<u8> {
        if !self.held.is_empty() && !self.at_line_start() {
            self.text.push(b'\n');
        }
        self.text.append(&mut self.held);
        self.text
    }
}

/// Drives a session until QEMU exits or a limit is hit. Input is held back
/// until the shell prints its first prompt: bytes sent earlier would be eaten
/// by the firmware or dropped when the kernel resets the UART FIFO.
pub fn drive(mut s: Session, limits: &Limits, echo: bool) -> Transcript {
    let start = Instant::now();
    let mut merged = Merged::default();
    let mut prompts = PromptCounter::default();
    let mut first_prompt = None;
    let mut pending: Vec<u8> = Vec::new();
    let (mut lines_sent, mut last_was_cr) = (0usize, false);
    let mut eof = false;
    let mut last_output = Instant::now();
    let mut armed = false;
    let end = loop {
        match s.rx.recv_timeout(Duration::from_millis(50)) {
            Ok(ev @ (Event::Stdout(_) | Event::Stderr(_))) => {
                if let Event::Stdout(b) = &ev {
                    if prompts.feed(b) > 0 && first_prompt.is_none() {
                        first_prompt = Some(start.elapsed());
                    }
                }
                merged.take(&ev, echo);
                last_output = Instant::now();
            }
            Ok(Event::Input(b)) => pending.extend_from_slice(&b),
            Ok(Event::InputEof) => eof = true,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        if prompts.count > 0 && !pending.is_empty() {
            lines_sent += count_lines(&pending, &mut last_was_cr);
            let bytes = std::mem::take(&mut pending);
            s.send(&bytes);
        }
        if let Some(status) = s.try_wait() {
            // Collect what the pipes still hold.
            while let Ok(ev) = s.rx.recv_timeout(Duration::from_millis(100)) {
                merged.take(&ev, echo);
            }
            break End::Exited(status);
        }
        let quiet = last_output.elapsed();
        // Every line sent has been answered with a fresh prompt and no input
        // is left: the shell waits for input that will never come. A Tab
        // that lists completions draws an extra prompt that answers no line,
        // so a quick verdict also needs the prompt to be the last output;
        // output after it (a late log line) only delays the verdict.
        if eof
            && pending.is_empty()
            && prompts.count > lines_sent
            && ((merged.text.ends_with(PROMPT) && quiet > Duration::from_millis(300))
                || quiet > Duration::from_secs(3))
        {
            s.kill();
            break End::InputDone;
        }
        let idle_limit = match limits.idle_after {
            Some(marker) if !armed => {
                armed = String::from_utf8_lossy(&merged.text).contains(marker);
                BOOT_IDLE
            }
            _ => limits.idle,
        };
        if quiet > idle_limit {
            s.kill();
            break End::Idle(idle_limit);
        }
        if start.elapsed() > limits.overall {
            s.kill();
            break End::Overall(limits.overall);
        }
    };
    if echo {
        let _ = std::io::stdout().flush();
    }
    Transcript {
        text: String::from_utf8_lossy(&merged.finish()).into_owned(),
        end,
        elapsed: start.elapsed(),
        first_prompt,
    }
}

/// Feeds `input` to the session as if typed after the first prompt.
pub fn feed_input(s: &Session, input: &[u8]) {
    let tx = s.input_sender();
    let _ = tx.send(Event::Input(input.to_vec()));
    let _ = tx.send(Event::InputEof);
}

/// Forwards our own stdin to the session from a thread.
pub fn forward_stdin(s: &Session) {
    let tx = s.input_sender();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Event::Input(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Event::InputEof);
    });
}

/// A session driven step by step: wait for text, type, ask the monitor.
pub struct Console {
    s: Session,
    text: String,
    /// Where the next `wait_for` starts searching.
    cursor: usize,
}

impl Console {
    pub fn new(s: Session) -> Console {
        Console {
            s,
            text: String::new(),
            cursor: 0,
        }
    }

    /// Waits until `needle` appears after the cursor; moves the cursor past it
    /// and returns the text in between.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let start = Instant::now();
        loop {
            if let Some(pos) = self.text[self.cursor..].find(needle) {
                let between = self.text[self.cursor..self.cursor + pos].to_string();
                self.cursor += pos + needle.len();
                return Ok(between);
            }
            if let Some(status) = self.s.try_wait() {
                return Err(format!(
                    "QEMU exited ({status}) while waiting for {needle:?}"
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!("no {needle:?} within {} s", timeout.as_secs()));
            }
            if let Ok(Event::Stdout(b) | Event::Stderr(b)) =
                self.s.rx.recv_timeout(Duration::from_millis(50))
            {
                self.text.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }

    pub fn type_line(&mut self, line: &str) {
        self.s.send(format!("{line}\n").as_bytes());
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.s.try_wait() {
                return Some(status);
            }
            if let Ok(Event::Stdout(b) | Event::Stderr(b)) =
                self.s.rx.recv_timeout(Duration::from_millis(50))
            {
                self.text.push_str(&String::from_utf8_lossy(&b));
            }
        }
        None
    }
}

/// One command on QEMU's human monitor (HMP) at a unix socket: returns its
/// output up to the next `(qemu)` prompt.
pub fn monitor_command(socket: &std::path::Path, command: &str) -> Result<String, String> {
    use std::os::unix::net::UnixStream;
    let mut stream = None;
    for _ in 0..100 {
        if let Ok(s) = UnixStream::connect(socket) {
            stream = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stream =
        stream.ok_or_else(|| format!("cannot connect to the monitor at {}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let read_until_prompt = |stream: &mut UnixStream| -> Result<String, String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("monitor: {e}"))?;
            if n == 0 {
                return Err("monitor closed".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.ends_with(b"(qemu) ") {
                return Ok(String::from_utf8_lossy(&buf).into_owned());
            }
        }
    };
    read_until_prompt(&mut stream)?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .map_err(|e| format!("monitor: {e}"))?;
    let out = read_until_prompt(&mut stream)?;
    // The monitor echoes the command with terminal escapes; the answer starts
    // on the next line.
    let body = out.split_once('\n').map_or("", |(_, rest)| rest);
    Ok(body.trim_end_matches("(qemu) ").replace('\r', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_warnings_never_split_a_console_line() {
        let mut m = Merged::default();
        m.stdout(b"boot\nsdb: sector 101 to 0x7fff");
        m.stderr(b"qemu-system-x86_64: vtd_iova_to_slpte: detected slpte permission error\n");
        m.stdout(b"fa000 (reserved)\nnext ");
        m.stderr(b"late\n");
        m.stdout(b"line\n");
        m.stderr(b"at a line end\n");
        assert_eq!(
            String::from_utf8(m.finish()).unwrap(),
            "boot\nsdb: sector 101 to 0x7ffffa000 (reserved)\n\
             qemu-system-x86_64: vtd_iova_to_slpte: detected slpte permission error\n\
             next line\nlate\nat a line end\n"
        );
    }

    #[test]
    fn a_console_line_never_lands_after_a_partial_qemu_warning() {
        // QEMU writes its program-name prefix and the message separately; a
        // console line read between the two must not follow the prefix.
        let mut m = Merged::default();
        m.stdout(b"busmaster> ");
        m.stdout(b"blk read nvme0n1 199 2\n");
        m.stderr(b"qemu-system-x86_64:");
        m.stdout(b"error: blk: nvme0n1: I/O error at sector 199\nbusmaster> ");
        m.stderr(b" blkdebug: injected error\nsecond ");
        m.stdout(b"poweroff\n");
        m.stderr(b"warning\nunfinished");
        let text = String::from_utf8(m.finish()).unwrap();
        assert_eq!(
            text,
            "busmaster> blk read nvme0n1 199 2\n\
             error: blk: nvme0n1: I/O error at sector 199\n\
             busmaster> poweroff\n\
             qemu-system-x86_64: blkdebug: injected error\nsecond warning\nunfinished"
        );
        assert_eq!(text.lines().filter(|l| l.starts_with("error:")).count(), 1);
    }

    #[test]
    fn the_prompt_is_seen_at_once_while_a_warning_is_partial() {
        let mut m = Merged::default();
        m.stderr(b"qemu-system-x86_64:");
        m.stdout(b"ok\nbusmaster> ");
        assert!(m.text.ends_with(b"busmaster> "));
        let text = String::from_utf8(m.finish()).unwrap();
        assert_eq!(text, "ok\nbusmaster> \nqemu-system-x86_64:");
    }

    #[test]
    fn prompt_found_across_chunk_boundaries() {
        let mut p = PromptCounter::default();
        assert_eq!(p.feed(b"boot...\nbusma"), 0);
        assert_eq!(p.feed(b"ster> help\nCommands\nbusmaster> "), 2);
        assert_eq!(p.count, 2);
        assert_eq!(p.feed(b"busmaster>"), 0);
    }

    #[test]
    fn lines_counted_like_the_kernel_editor() {
        let mut cr = false;
        assert_eq!(count_lines(b"a\nb\r\nc\rd", &mut cr), 3);
        // CR at the end of one chunk, LF at the start of the next: one line.
        assert_eq!(count_lines(b"x\r", &mut cr), 1);
        assert_eq!(count_lines(b"\ny\n", &mut cr), 1);
        // Ctrl-C ends a line without CR or LF; escape sequences end none.
        assert_eq!(count_lines(b"abc\x03\x1b[A\x1b[B\t", &mut cr), 1);
    }

    #[test]
    fn end_descriptions_name_the_cause() {
        assert!(End::Idle(Duration::from_secs(5))
            .describe()
            .contains("no output for 5 s"));
        assert!(End::Exited(37).describe().contains("crashed"));
        assert!(End::InputDone.describe().contains("without 'poweroff'"));
    }
}
