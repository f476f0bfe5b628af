//! "Did you mean ...?" for mistyped words.

use alloc::vec::Vec;

/// Words longer than this are not compared (they are not typos of a command).
const MAX_WORD: usize = 32;

/// Edit distance with adjacent transpositions ("optimal string alignment"):
/// the number of single-character insertions, deletions, substitutions and
/// swaps of neighbours that turn `a` into `b`.
pub fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Three rows of the classic table: i-2, i-1, i.
    let mut prev2: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i);
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur.push(d);
        }
        prev2 = core::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

/// The candidate `word` was most likely meant to be, if one is close: a
/// unique candidate that starts with `word`, else the nearest by
/// [`distance`] within 1 edit for words up to 4 characters, 2 for longer
/// ones (ties go to the earlier candidate). `None` for an exact match.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.is_empty() || word.len() > MAX_WORD || candidates.contains(&word) {
        return None;
    }
    let mut extending = candidates.iter().filter(|c| c.starts_with(word));
    if let (Some(only), None) = (extending.next(), extending.next()) {
        return Some(only);
    }
    let limit = if word.len() <= 4 { 1 } else { 2 };
    candidates
        .iter()
        .filter(|c| c.len() <= MAX_WORD)
        .map(|c| (distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMDS: &[&str] = &[
        "help",
        "uptime",
        "meminfo",
        "buddyinfo",
        "zoneinfo",
        "ioremap",
        "lspci",
        "acpi",
        "dmar",
        "edu",
        "floppy",
        "isadma",
        "dma",
        "dmabench",
        "iommu",
        "irq",
        "dmesg",
        "poweroff",
        "reboot",
    ];

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(
            distance("meminfo", "memnifo"),
            1,
            "swap of neighbours is one edit"
        );
        assert_eq!(distance("lspci", "lspic"), 1);
        assert_eq!(distance("help", "hlep"), 1);
        assert_eq!(distance("dma", "dmar"), 1);
    }

    #[test]
    fn typos_find_their_command() {
        assert_eq!(did_you_mean("memnifo", CMDS), Some("meminfo"));
        assert_eq!(did_you_mean("lspic", CMDS), Some("lspci"));
        assert_eq!(did_you_mean("hepl", CMDS), Some("help"));
        assert_eq!(did_you_mean("powerof", CMDS), Some("poweroff"));
        assert_eq!(did_you_mean("uptim", CMDS), Some("uptime"));
        assert_eq!(did_you_mean("rebot", CMDS), Some("reboot"));
        // A unique prefix is suggested even when far in edits.
        assert_eq!(did_you_mean("buddy", CMDS), Some("buddyinfo"));
        assert_eq!(did_you_mean("flop", CMDS), Some("floppy"));
    }

    #[test]
    fn nothing_close_means_no_suggestion() {
        assert_eq!(did_you_mean("bogus", CMDS), None);
        assert_eq!(did_you_mean("xyzzy", CMDS), None);
        assert_eq!(did_you_mean("", CMDS), None);
        assert_eq!(did_you_mean("meminfo", CMDS), None, "exact match");
        // "dm" starts several commands: no unique prefix, and "dma" is one
        // edit away, so that is the suggestion.
        assert_eq!(did_you_mean("dm", CMDS), Some("dma"));
        let long = "a".repeat(1000);
        assert_eq!(did_you_mean(&long, CMDS), None);
    }
}
