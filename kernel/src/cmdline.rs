//! Boot options: `key=value` words separated by spaces (`mode=test skip=3`).

use alloc::string::String;
use alloc::vec::Vec;

pub struct Cmdline {
    raw: String,
    words: Vec<(String, String)>,
}

impl Cmdline {
    pub fn parse(raw: &str) -> Self {
        let words = raw
            .split_ascii_whitespace()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.into(), v.into()),
                None => (w.into(), String::new()),
            })
            .collect();
        Cmdline {
            raw: raw.trim().into(),
            words,
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.words
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }
}
