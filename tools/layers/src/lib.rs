//! The kernel's layering, checked on its source text.
//!
//! A top-level module of a crate's `src/` is a `name.rs` file (other than
//! `main.rs`/`lib.rs`) or a `name/` folder. Module `a` depends on module `b`
//! when any file of `a` names `crate::b` (a path or a `use`), or lists `b` first
//! in a `use crate::{b::…, …}` group — the rules of
//! `../shared/hooks/kernel_cycles.py`. Line comments are ignored.
//!
//! [`find_cycle`] finds an import circle; [`check_order`] checks that every edge
//! points to a module earlier in a layer list (lowest first).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub mod size;

/// Module name -> the modules it imports (itself excluded).
pub type Edges = BTreeMap<String, BTreeSet<String>>;

/// What can go wrong reading a source tree.
#[derive(Debug)]
pub enum LayersError {
    Io(PathBuf, io::Error),
    /// The folder holds no top-level module.
    Empty(PathBuf),
}

impl fmt::Display for LayersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayersError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            LayersError::Empty(p) => write!(f, "{}: no top-level modules", p.display()),
        }
    }
}

impl std::error::Error for LayersError {}

fn read_dir(p: &Path) -> Result<Vec<PathBuf>, LayersError> {
    let mut v = Vec::new();
    for e in fs::read_dir(p).map_err(|e| LayersError::Io(p.into(), e))? {
        v.push(e.map_err(|e| LayersError::Io(p.into(), e))?.path());
    }
    v.sort();
    Ok(v)
}

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), LayersError> {
    for f in read_dir(p)? {
        if f.is_dir() {
            rust_files(&f, out)?;
        } else if f.extension().is_some_and(|x| x == "rs") {
            out.push(f);
        }
    }
    Ok(())
}

/// The top-level modules of `src` and the files of each.
pub fn modules(src: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>, LayersError> {
    let mut m = BTreeMap::new();
    for p in read_dir(src)? {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if p.is_dir() {
            let mut files = Vec::new();
            rust_files(&p, &mut files)?;
            m.insert(name.to_string(), files);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "main" && stem != "lib" {
                m.insert(stem.to_string(), vec![p.clone()]);
            }
        }
    }
    if m.is_empty() {
        return Err(LayersError::Empty(src.into()));
    }
    Ok(m)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_lowercase() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'
}

/// Removes `//` comments (to the end of the line).
fn strip_line_comments(src: &str) -> String {
    src.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module names a source text imports from its crate root.
pub fn imports(src: &str) -> BTreeSet<String> {
    let src = strip_line_comments(src);
    let b = src.as_bytes();
    let mut out = BTreeSet::new();
    let key = b"crate::";
    let mut i = 0;
    while let Some(off) = src[i..].find("crate::") {
        let at = i + off;
        i = at + key.len();
        // `crate` must be a whole word (`$crate::` counts, `mycrate::` does not).
        if at > 0 && (is_ident(b[at - 1]) || b[at - 1].is_ascii_uppercase()) {
            continue;
        }
        if i < b.len() && is_ident_start(b[i]) {
            let end = (i..b.len()).find(|&j| !is_ident(b[j])).unwrap_or(b.len());
            out.insert(src[i..end].to_string());
        } else if i < b.len() && b[i] == b'{' && src[..at].trim_end().ends_with("use") {
            let close = src[i..].find('}').map_or(b.len(), |c| i + c);
            for part in src[i + 1..close].split(',') {
                // `b::c`, `b as x`, `b`: the module is the first word.
                let first = part
                    .split("::")
                    .next()
                    .and_then(|w| w.split_whitespace().next())
                    .unwrap_or("");
                if !first.is_empty() && first.bytes().all(is_ident) {
                    out.insert(first.to_string());
                }
            }
        }
    }
    out
}

/// The import graph between the top-level modules of `src`.
pub fn edges(src: &Path) -> Result<Edges, LayersError> {
    let mods = modules(src)?;
    let mut g = Edges::new();
    for (name, files) in &mods {
        let mut to = BTreeSet::new();
        for f in files {
            let text = fs::read_to_string(f).map_err(|e| LayersError::Io(f.clone(), e))?;
            to.extend(
                imports(&text)
                    .into_iter()
                    .filter(|m| m != name && mods.contains_key(m)),
            );
        }
        g.insert(name.clone(), to);
    }
    Ok(g)
}

/// A circle of imports (`[a, b, …, a]`), if there is one.
pub fn find_cycle(g: &Edges) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit<'a>(
        g: &'a Edges,
        u: &'a str,
        mark: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        mark.insert(u, Mark::Open);
        stack.push(u);
        for v in g.get(u).into_iter().flatten() {
            match mark.get(v.as_str()).copied().unwrap_or(Mark::Done) {
                Mark::Open => {
                    let from = stack.iter().position(|s| s == v).unwrap_or(0);
                    let mut c: Vec<String> = stack[from..].iter().map(|s| s.to_string()).collect();
                    c.push(v.clone());
                    return Some(c);
                }
                Mark::New => {
                    if let Some(c) = visit(g, v, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(u, Mark::Done);
        None
    }
    let mut mark: BTreeMap<&str, Mark> = g.keys().map(|k| (k.as_str(), Mark::New)).collect();
    let mut stack = Vec::new();
    for u in g.keys() {
        if mark[u.as_str()] == Mark::New {
            if let Some(c) = visit(g, u, &mut mark, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// An import that does not point down the layer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upward {
    pub from: String,
    pub to: String,
}

impl fmt::Display for Upward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} imports {}, which is not below it in the layer list",
            self.from, self.to
        )
    }
}

/// Every edge from a module to one not before it in `order` (or not in it).
pub fn check_order(g: &Edges, order: &[String]) -> Vec<Upward> {
    let pos = |m: &str| order.iter().position(|o| o == m);
    let mut bad = Vec::new();
    for (from, tos) in g {
        for to in tos {
            match (pos(from), pos(to)) {
                (Some(a), Some(b)) if b < a => {}
                _ => bad.push(Upward {
                    from: from.clone(),
                    to: to.clone(),
                }),
            }
        }
    }
    bad
}
