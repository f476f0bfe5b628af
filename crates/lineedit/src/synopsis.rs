//! Reading the words a command accepts first out of its usage synopsis.
//!
//! Synopses are written the usual way: literal words as themselves,
//! placeholders in `<angle brackets>`, optional parts in `[brackets]`,
//! alternatives separated by `|`. For `info | dma <to|from> <len>` the first
//! words are `info` and `dma`; for `[-v|-t|-m]` they are `-v`, `-t`, `-m`;
//! for `<phys> <size>` there are none.

use alloc::vec::Vec;

/// The literal words that can stand first in `usage`, in order.
pub fn first_words(usage: &str) -> Vec<&str> {
    let mut s = usage.trim();
    // One optional group around everything: `[a | b]`.
    if s.starts_with('[') && closing(s, 0) == Some(s.len() - 1) {
        s = s[1..s.len() - 1].trim();
    }
    let mut words = Vec::new();
    for alt in split_top(s) {
        let Some(w) = alt.split_ascii_whitespace().next() else {
            continue;
        };
        if w.starts_with(['<', '[', '(', '{'])
            || w.contains(['|', '<', '>', '[', ']'])
            || w == "..."
        {
            continue;
        }
        if !words.contains(&w) {
            words.push(w);
        }
    }
    words
}

/// Index of the bracket closing the one at `open`.
fn closing(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in s.bytes().enumerate().skip(open) {
        match b {
            b'[' | b'<' => depth += 1,
            b']' | b'>' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `s` split at the `|` that are not inside brackets.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'[' | b'<' => depth += 1,
            b']' | b'>' => depth = depth.saturating_sub(1),
            b'|' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_and_flags() {
        assert_eq!(
            first_words("info | dma <to|from> <len> [--high | --unmapped]"),
            ["info", "dma"]
        );
        assert_eq!(
            first_words("[domains | faults | translate <bb:dd.f> <iova>]"),
            ["domains", "faults", "translate"]
        );
        assert_eq!(first_words("[-v|-t|-m]"), ["-v", "-t", "-m"]);
        assert_eq!(first_words("read <lba> [count]"), ["read"]);
    }

    #[test]
    fn placeholders_and_empty_give_nothing() {
        assert!(first_words("").is_empty());
        assert!(first_words("<phys> <size> [uc|uc-|wc|wt|wb]").is_empty());
        assert!(first_words("[<command>]").is_empty());
        // `[a] [b]` is not one group around everything.
        assert!(first_words("[<a>] [b]").is_empty());
    }

    #[test]
    fn malformed_synopses_do_not_panic() {
        for s in ["[", "]", "[[", "<", ">>", "|", "a|", "|b", "[a|b", "a]|b"] {
            let _ = first_words(s);
        }
        assert_eq!(first_words("a|"), ["a"]);
        assert_eq!(first_words("|b"), ["b"]);
    }
}
