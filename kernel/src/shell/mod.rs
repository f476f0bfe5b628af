//! The serial shell: a prompt, the line editor from `crates/lineedit`
//! (history, Tab completion from the table) and one command table
//! (`commands::COMMANDS`) that every layer adds its commands to, each entry
//! with its usage synopsis, summary and examples.

mod acpi_cmds;
mod attack_cmds;
mod blk_cmds;
mod commands;
pub mod dma_cmds;
mod dmademo_cmds;
mod dmaengine_cmds;
mod fb_cmds;
mod iommu_cmds;
mod pci_cmds;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use lineedit::{Completer, Editor, Outcome};

use crate::console::Out;
use crate::drivers::serial;
use crate::{kprint, kprintln};

pub const PROMPT: &str = "busmaster> ";
/// Longest line the editor keeps; further characters are dropped.
pub const MAX_LINE: usize = 256;
/// Lines the Up arrow can bring back.
pub const HISTORY: usize = 32;

/// What went wrong with a command line. Shown as one `error: <cmd>: <what>`
/// line; argument errors add a `usage:` line below it.
#[derive(Debug)]
pub enum CmdError {
    /// No such command; `suggestion` is a close command name.
    Unknown {
        name: String,
        suggestion: Option<&'static str>,
    },
    /// The arguments do not fit the command's synopsis.
    Usage {
        cmd: &'static str,
        usage: &'static str,
        /// What is wrong, when known (else "wrong arguments").
        what: Option<String>,
    },
    /// The command ran and failed. The message starts with `<cmd>: `;
    /// [`execute`] adds it when a command left it out.
    Failed(String),
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Unknown { name, suggestion } => {
                write!(f, "{name}: unknown command")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean '{s}'? ('help' lists the commands)"),
                    None => write!(f, " ('help' lists the commands)"),
                }
            }
            CmdError::Usage { cmd, usage, what } => {
                let what = match what {
                    Some(w) => w.as_str(),
                    None if usage.is_empty() => "takes no arguments",
                    None => "wrong arguments",
                };
                write!(f, "{cmd}: {what}\nusage: {cmd}")?;
                if !usage.is_empty() {
                    write!(f, " {usage}")?;
                }
                write!(f, "   (examples: 'help {cmd}')")
            }
            CmdError::Failed(msg) => f.write_str(msg),
        }
    }
}

pub type CmdResult = Result<(), CmdError>;

/// One entry of the command table.
pub struct Command {
    pub name: &'static str,
    /// Argument synopsis: literal words as themselves, `<placeholders>`,
    /// `[optional]` parts, `a | b` alternatives; empty when the command takes
    /// none. Tab completes the literal first words (subcommands, flags).
    pub usage: &'static str,
    /// One line for the `help` list.
    pub summary: &'static str,
    /// Complete command lines `help <cmd>` shows, at least one; text after
    /// `#` explains the line.
    pub examples: &'static [&'static str],
    pub run: fn(&Command, &[&str]) -> CmdResult,
}

impl Command {
    pub fn usage_error(&self) -> CmdError {
        CmdError::Usage {
            cmd: self.name,
            usage: self.usage,
            what: None,
        }
    }

    /// An argument the command cannot use, e.g. `bad address 'zz'`.
    pub fn bad_arg(&self, what: impl fmt::Display) -> CmdError {
        CmdError::Usage {
            cmd: self.name,
            usage: self.usage,
            what: Some(alloc::format!("{what}")),
        }
    }

    /// For commands without arguments.
    pub fn no_args(&self, args: &[&str]) -> CmdResult {
        if args.is_empty() {
            Ok(())
        } else {
            Err(self.usage_error())
        }
    }
}

/// Parses a number as users type them: `0x` hex or decimal, with an optional
/// `K`, `M` or `G` suffix (binary multiples).
pub fn parse_u64(s: &str) -> Option<u64> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    v.checked_mul(mult)
}

/// The `dmar` view into a string (for tests).
pub fn write_dmar_for_test(out: &mut alloc::string::String, d: &acpi_tables::dmar::Dmar) {
    let _ = acpi_cmds::write_dmar(out, d);
}

pub fn find(name: &str) -> Option<&'static Command> {
    commands::COMMANDS.iter().find(|c| c.name == name)
}

/// The command names, in table order.
pub fn names() -> Vec<&'static str> {
    commands::COMMANDS.iter().map(|c| c.name).collect()
}

/// A command name close to `word`, for "did you mean".
pub fn suggest(word: &str) -> Option<&'static str> {
    lineedit::suggest::did_you_mean(word, &names())
}

/// Runs one command line.
pub fn execute(line: &str) -> CmdResult {
    let mut words = line.split_ascii_whitespace();
    let Some(name) = words.next() else {
        return Ok(());
    };
    let args: Vec<&str> = words.collect();
    let Some(cmd) = find(name) else {
        return Err(CmdError::Unknown {
            name: name.into(),
            suggestion: suggest(name),
        });
    };
    (cmd.run)(cmd, &args).map_err(|e| match e {
        // One form for every failure: `<cmd>: <what>`.
        CmdError::Failed(msg)
            if !msg.starts_with(cmd.name) || !msg[cmd.name.len()..].starts_with(':') =>
        {
            CmdError::Failed(alloc::format!("{}: {msg}", cmd.name))
        }
        e => e,
    })
}

/// Tab completion from the command table: command names first; then the
/// literal first words of the command's synopsis (subcommands, flags), or
/// command names again after `help`.
pub struct TableCompleter;

impl Completer for TableCompleter {
    fn candidates(&self, before: &[&str], add: &mut dyn FnMut(&str)) {
        match before {
            [] | ["help"] => commands::COMMANDS.iter().for_each(|c| add(c.name)),
            [name] => {
                if let Some(c) = find(name) {
                    lineedit::synopsis::first_words(c.usage)
                        .into_iter()
                        .for_each(add);
                }
            }
            _ => {}
        }
    }
}

/// The shell's line editor: VT100 keys, history, completion (crates/lineedit).
pub fn editor() -> Editor {
    Editor::new(PROMPT, MAX_LINE, HISTORY)
}

/// Prints a command's error: `error: <cmd>: <what>`, then any usage line.
pub fn report(e: &CmdError) {
    kprintln!("error: {e}");
}

/// The interactive loop; never returns (poweroff and reboot end it).
pub fn run() -> ! {
    kprintln!("Busmaster shell. Type 'help' for the commands; Tab completes, Up recalls.");
    let mut editor = editor();
    kprint!("{PROMPT}");
    loop {
        let Some(byte) = crate::console::try_read_byte() else {
            if serial::rx_interrupt_enabled() {
                // Sleep until the UART (or the tick) interrupts; `sti; hlt`
                // is atomic, so a byte arriving in between still wakes us.
                x86_64::instructions::interrupts::enable_and_hlt();
            } else {
                core::hint::spin_loop();
            }
            continue;
        };
        match editor.feed(byte, &TableCompleter, &mut Out) {
            Outcome::Pending => {}
            Outcome::Line(line) => {
                if let Err(e) = execute(&line) {
                    report(&e);
                }
                kprint!("{PROMPT}");
            }
            Outcome::Cancelled => kprint!("{PROMPT}"),
        }
    }
}
