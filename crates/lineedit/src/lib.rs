//! `lineedit`: the line editor behind Busmaster's serial shell, kept free of
//! the kernel so it can be tested on the host.
//!
//! * [`keys`]: terminal input bytes to keys (VT100/ANSI escape sequences,
//!   control keys, CR / LF / CR LF).
//! * [`editor`]: the edit buffer with its cursor, a history ring, completion
//!   against a [`Completer`], and the escape sequences that redraw the line.
//! * [`suggest`]: "did you mean" by edit distance.
//! * [`synopsis`]: the first words a usage synopsis accepts (subcommand
//!   completion from the text `help` shows).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod editor;
pub mod keys;
pub mod suggest;
pub mod synopsis;

pub use editor::{Completer, Editor, Outcome, Words};
pub use keys::{Decoder, Key};
