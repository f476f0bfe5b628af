//! Graded exercises (issue #16): regions of the real source are cut to stubs on a
//! student's branch, and a grader runs the tests that region must pass.
//!
//! ```text
//! run.sh exercise list
//! run.sh exercise start <name>            branch exercise/<name> with the regions cut, checked out
//! run.sh exercise cut <name> --out DIR    the cut tree written to DIR (git untouched)
//! run.sh exercise prove                   stub 0, reference full, wrong patch below, for each
//! run.sh grade <name> [--repo PATH] [--host-only]
//! ```
//!
//! The marker format (a region in any file under `crates/`):
//!
//! ```text
//!         // exercise(swiotlb): begin
//!         <reference code>
//!         // exercise(swiotlb): stub
//!         // todo!("exercise swiotlb: ...")
//!         // exercise(swiotlb): end
//! ```
//!
//! Cutting replaces the region, markers included, by its stub lines without their
//! leading `// ` (indentation kept). `exercises/<name>/exercise.txt` says what is graded
//! (`host: <package> <test path>`, `qemu: <runner --only substring>`);
//! `exercises/<name>/wrong.patch` is a plausible wrong answer the suite proves scores
//! below full marks.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The checkout this runner was built from.
pub fn own_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// One graded host test: `cargo test -p <package> -- --exact <test>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCheck {
    pub package: String,
    pub test: String,
}

/// What `exercises/<name>/exercise.txt` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exercise {
    pub name: String,
    pub summary: String,
    pub difficulty: String,
    pub mirrors: Vec<String>,
    pub host: Vec<HostCheck>,
    pub qemu: Vec<String>,
    pub handout: String,
}

/// Parses one `exercise.txt`.
pub fn parse_exercise(name: &str, text: &str) -> Result<Exercise, String> {
    let mut e = Exercise {
        name: name.to_string(),
        summary: String::new(),
        difficulty: String::new(),
        mirrors: vec![],
        host: vec![],
        qemu: vec![],
        handout: String::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("exercises/{name}/exercise.txt:{}", n + 1);
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("{}: expected `key: value`, got '{line}'", at()));
        };
        let value = value.trim();
        match key.trim() {
            "summary" => e.summary = value.to_string(),
            "difficulty" => {
                if !["easy", "medium", "hard"].contains(&value) {
                    return Err(format!(
                        "{}: difficulty is easy, medium or hard, not '{value}'",
                        at()
                    ));
                }
                e.difficulty = value.to_string()
            }
            "mirrors" => e.mirrors.push(value.to_string()),
            "host" => {
                let mut words = value.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some(p), Some(t), None) => e.host.push(HostCheck {
                        package: p.to_string(),
                        test: t.to_string(),
                    }),
                    _ => {
                        return Err(format!(
                            "{}: `host: <cargo package> <exact test path>`, got '{value}'",
                            at()
                        ))
                    }
                }
            }
            "qemu" => {
                if value.is_empty() || value.contains(char::is_whitespace) {
                    return Err(format!("{}: `qemu: <test name substring>`", at()));
                }
                e.qemu.push(value.to_string())
            }
            "handout" => e.handout = value.to_string(),
            other => return Err(format!("{}: unknown key '{other}'", at())),
        }
    }
    for (key, missing) in [
        ("summary", e.summary.is_empty()),
        ("difficulty", e.difficulty.is_empty()),
        ("handout", e.handout.is_empty()),
        ("host", e.host.is_empty()),
    ] {
        if missing {
            return Err(format!("exercises/{name}/exercise.txt: no `{key}:` line"));
        }
    }
    Ok(e)
}

/// Every `exercises/*/exercise.txt` under `root`, by name.
pub fn load_all(root: &Path) -> Result<Vec<Exercise>, String> {
    let dir = root.join("exercises");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut all = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = entry.path().join("exercise.txt");
        if !file.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        all.push(parse_exercise(&name, &text)?);
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// The exercise called `name`, or an error listing the known ones.
pub fn find(root: &Path, name: &str) -> Result<Exercise, String> {
    let all = load_all(root)?;
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    all.iter().find(|e| e.name == name).cloned().ok_or_else(|| {
        format!(
            "no exercise called '{name}' (exercises: {})",
            names.join(", ")
        )
    })
}

// ----- markers -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Begin,
    Stub,
    End,
}

/// `// exercise(NAME): begin|stub|end` → (NAME, mark).
fn marker(line: &str) -> Option<(&str, Mark)> {
    let rest = line.trim().strip_prefix("// exercise(")?;
    let (name, rest) = rest.split_once("):")?;
    let mark = match rest.trim() {
        "begin" => Mark::Begin,
        "stub" => Mark::Stub,
        "end" => Mark::End,
        _ => return None,
    };
    Some((name, mark))
}

/// A stub line with its `// ` taken off, indentation kept.
fn uncomment(line: &str) -> Result<String, String> {
    let indent = &line[..line.len() - line.trim_start().len()];
    let body = line.trim_start();
    if body == "//" {
        return Ok(String::new());
    }
    match body.strip_prefix("// ") {
        Some(code) => Ok(format!("{indent}{code}")),
        None => Err(format!(
            "stub line is not a `// ` comment: '{}'",
            line.trim()
        )),
    }
}

/// `text` with every region of exercise `name` cut to its stub, and how many regions
/// were cut. Regions of other exercises stay as they are (their markers are checked
/// too: a broken region anywhere is an error).
pub fn cut_text(text: &str, name: &str) -> Result<(String, usize), String> {
    let mut out = String::with_capacity(text.len());
    // (exercise, mark, line) of the region being read.
    let mut open: Option<(String, Mark, usize)> = None;
    let mut regions = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let lineno = n + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        let eol = &line[bare.len()..];
        if let Some((ex, mark)) = marker(bare) {
            match (&mut open, mark) {
                (None, Mark::Begin) => open = Some((ex.to_string(), Mark::Begin, lineno)),
                (Some((o, state @ Mark::Begin, _)), Mark::Stub) if o == ex => *state = Mark::Stub,
                (Some((o, Mark::Stub, _)), Mark::End) if o == ex => {
                    if o == name {
                        regions += 1;
                    }
                    let mine = o == name;
                    open = None;
                    if mine {
                        continue;
                    }
                }
                (Some((o, _, at)), _) => {
                    return Err(format!(
                        "line {lineno}: `{}` inside the region of '{o}' opened at line {at} \
                         (regions never nest; each is begin, stub, end)",
                        bare.trim()
                    ))
                }
                (None, _) => {
                    return Err(format!(
                        "line {lineno}: `{}` without a `begin` before it",
                        bare.trim()
                    ))
                }
            }
            if ex == name {
                continue;
            }
            out.push_str(line);
            continue;
        }
        match &open {
            Some((o, Mark::Begin, _)) if o == name => {} // reference: dropped
            Some((o, Mark::Stub, _)) if o == name => {
                let code = uncomment(bare).map_err(|e| format!("line {lineno}: {e}"))?;
                out.push_str(&code);
                out.push_str(eol);
            }
            _ => out.push_str(line),
        }
    }
    if let Some((o, _, at)) = open {
        return Err(format!(
            "the region of '{o}' opened at line {at} has no `end`"
        ));
    }
    Ok((out, regions))
}

// ----- trees -----

fn git(root: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .map_err(|e| format!("running git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The files git tracks in `root` (relative paths), as they are in the working tree.
pub fn tracked_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let list = git(
        root,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )?;
    Ok(list
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .filter(|p| root.join(p).is_file())
        .collect())
}

/// The files of `root` under `crates/` holding a region of `name`, cut (relative path,
/// new content). An exercise with no region is an error.
pub fn cut_files(root: &Path, name: &str) -> Result<Vec<(PathBuf, String)>, String> {
    let mut cut = Vec::new();
    for rel in tracked_files(root)? {
        if !rel.starts_with("crates") || rel.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&rel)) else {
            continue;
        };
        if !text.contains("// exercise(") {
            continue;
        }
        let (new, regions) =
            cut_text(&text, name).map_err(|e| format!("{}: {e}", rel.display()))?;
        if regions > 0 {
            cut.push((rel, new));
        }
    }
    if cut.is_empty() {
        return Err(format!(
            "no `// exercise({name}): begin` region under crates/"
        ));
    }
    Ok(cut)
}

/// Makes `dest` hold `root`'s tracked files, with `overrides` in place of theirs.
/// A file is written only when its content differs, so cargo rebuilds only the crates
/// that changed.
pub fn sync_tree(root: &Path, dest: &Path, overrides: &[(PathBuf, String)]) -> Result<(), String> {
    let over: BTreeMap<&Path, &str> = overrides
        .iter()
        .map(|(p, s)| (p.as_path(), s.as_str()))
        .collect();
    for rel in tracked_files(root)? {
        let want = match over.get(rel.as_path()) {
            Some(s) => s.as_bytes().to_vec(),
            None => std::fs::read(root.join(&rel))
                .map_err(|e| format!("{}: {e}", root.join(&rel).display()))?,
        };
        let to = dest.join(&rel);
        if std::fs::read(&to).is_ok_and(|have| have == want) {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&to, &want).map_err(|e| format!("{}: {e}", to.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(root.join(&rel)) {
                let _ = std::fs::set_permissions(
                    &to,
                    std::fs::Permissions::from_mode(m.permissions().mode()),
                );
            }
        }
    }
    Ok(())
}

/// Removes every file under `dest` that is not a tracked file of `root` (a scratch
/// copy made by [`sync_tree`]; `sync_tree` only adds and overwrites). Only for the
/// suite's own scratch tree: a user's `--out` directory is never pruned.
pub fn prune_untracked(root: &Path, dest: &Path) -> Result<usize, String> {
    if !dest.exists() {
        return Ok(0);
    }
    let tracked: std::collections::BTreeSet<PathBuf> = tracked_files(root)?.into_iter().collect();
    let mut removed = 0;
    let mut stack = vec![dest.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries {
            let p = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            let rel = p.strip_prefix(dest).unwrap_or(&p).to_path_buf();
            if p.is_dir() {
                stack.push(p);
            } else if !tracked.contains(&rel) {
                std::fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Applies `patch` (git diff format) to the plain directory `dir`.
pub fn apply_patch(dir: &Path, patch: &Path) -> Result<(), String> {
    let parent = dir.parent().unwrap_or(dir);
    let out = Command::new("git")
        .arg("apply")
        .arg(patch)
        .current_dir(dir)
        // `dir` may sit inside a checkout (target/…): apply to the directory, not to
        // the repository around it.
        .env("GIT_CEILING_DIRECTORIES", parent)
        .output()
        .map_err(|e| format!("running git apply: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git apply {}: {}",
            patch.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

// ----- grading -----

/// One graded check's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `host` or `qemu`.
    pub kind: &'static str,
    pub name: String,
    pub ok: bool,
    /// What a student can act on (empty when it passed).
    pub reason: String,
}

/// The whole grade of one exercise.
#[derive(Clone, Debug, Default)]
pub struct Grade {
    pub checks: Vec<Check>,
    /// Compiler warnings in the host build (the stub must not add any).
    pub warnings: Vec<String>,
}

impl Grade {
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.ok).count()
    }
}

/// A command's output, or a timeout.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

/// Runs `cmd` to the end, or kills its process group after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Result<Ran, String> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("running {:?}: {e}", cmd.get_program()))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let t0 = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if t0.elapsed() > limit {
            timed_out = true;
            // The whole group: cargo and the test binary it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            break child.wait().map_err(|e| e.to_string())?;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Ran {
        ok: status.success() && !timed_out,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
        timed_out,
    })
}

/// The first compiler error in cargo's stderr, with its location.
fn first_compile_error(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let i = lines.iter().position(|l| {
        l.starts_with("error")
            && !l.starts_with("error: could not compile")
            && !l.starts_with("error: aborting")
    })?;
    let loc = lines[i + 1..]
        .iter()
        .take(3)
        .find_map(|l| l.trim().strip_prefix("--> "));
    Some(match loc {
        Some(loc) => format!("{} ({loc})", lines[i]),
        None => lines[i].to_string(),
    })
}

/// Workspace warnings in cargo's stderr (`warning: ...` with its location).
fn warnings(stderr: &str) -> Vec<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let mut v = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.starts_with("warning")
            || l.contains("generated")
            || l.contains("profiles for the non root")
        {
            continue;
        }
        let loc = lines[i + 1..]
            .iter()
            .take(3)
            .find_map(|l| l.trim().strip_prefix("--> "));
        v.push(match loc {
            Some(loc) => format!("{l} ({loc})"),
            None => l.to_string(),
        });
    }
    v
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let t: String = s.chars().take(max).collect();
        format!("{t}…")
    }
}

/// What a failed test's output section says, in one line.
pub fn failure_reason(section: &[&str]) -> String {
    let Some(i) = section.iter().position(|l| l.contains("panicked at")) else {
        return section
            .iter()
            .find(|l| !l.trim().is_empty())
            .map_or("failed (no panic message)".into(), |l| {
                shorten(l.trim(), 200)
            });
    };
    let loc = section[i]
        .split("panicked at ")
        .nth(1)
        .unwrap_or("")
        .trim_end_matches(':')
        .to_string();
    let msg: Vec<&str> = section[i + 1..]
        .iter()
        .take_while(|l| {
            !l.trim().is_empty() && !l.starts_with("note:") && !l.starts_with("stack backtrace")
        })
        .copied()
        .collect();
    let first = msg.first().copied().unwrap_or("").trim();
    if let Some(rest) = first.strip_prefix("not yet implemented") {
        let rest = rest.trim_start_matches(':').trim();
        return if rest.is_empty() {
            format!("not yet written (todo!) at {loc}")
        } else {
            format!("not yet written (todo!): {rest} (at {loc})")
        };
    }
    let mut line = first.to_string();
    for extra in msg.iter().skip(1).take(2) {
        let t = extra.trim();
        if t.starts_with("left:") || t.starts_with("right:") {
            line.push_str(", ");
            line.push_str(&shorten(t, 60));
        }
    }
    shorten(&format!("{line} (at {loc})"), 240)
}

/// Parses libtest output: each test's verdicts (several binaries may hold one name) and
/// each failure's output section.
fn parse_libtest(stdout: &str) -> (BTreeMap<String, Vec<bool>>, BTreeMap<String, String>) {
    let mut verdicts: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    let lines: Vec<&str> = stdout.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if let Some(rest) = l.strip_prefix("test ") {
            if let Some((name, verdict)) = rest.rsplit_once(" ... ") {
                match verdict.trim() {
                    "ok" => verdicts.entry(name.to_string()).or_default().push(true),
                    v if v.starts_with("FAILED") => {
                        verdicts.entry(name.to_string()).or_default().push(false)
                    }
                    _ => {}
                }
            }
        }
        if let Some(name) = l
            .strip_prefix("---- ")
            .and_then(|r| r.strip_suffix(" stdout ----"))
        {
            let end = lines[i + 1..]
                .iter()
                .position(|l| l.starts_with("---- ") || *l == "failures:")
                .map_or(lines.len(), |k| i + 1 + k);
            reasons.insert(name.to_string(), failure_reason(&lines[i + 1..end]));
            i = end;
            continue;
        }
        i += 1;
    }
    (verdicts, reasons)
}

/// Where host tests build: `CARGO_TARGET_DIR` when set, else the repository's own.
fn cargo_in(repo: &Path, target_dir: Option<&Path>) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(repo);
    // A failing property test would otherwise leave a proptest-regressions file in
    // the graded tree.
    c.env("PROPTEST_DISABLE_FAILURE_PERSISTENCE", "1");
    if let Some(t) = target_dir {
        c.env("CARGO_TARGET_DIR", t);
    }
    c
}

/// Runs the exercise's host tests in `repo`: one build and one run per package.
pub fn grade_host(ex: &Exercise, repo: &Path, target_dir: Option<&Path>) -> Grade {
    let mut grade = Grade::default();
    let mut packages: Vec<&str> = Vec::new();
    for h in &ex.host {
        if !packages.contains(&h.package.as_str()) {
            packages.push(&h.package);
        }
    }
    let mut verdict: BTreeMap<(String, String), (bool, String)> = BTreeMap::new();
    for pkg in packages {
        let tests: Vec<&str> = ex
            .host
            .iter()
            .filter(|h| h.package == pkg)
            .map(|h| h.test.as_str())
            .collect();
        let mut set = |t: &str, ok: bool, why: String| {
            verdict.insert((pkg.to_string(), t.to_string()), (ok, why));
        };
        // Build first (no time limit: a cold build takes minutes), then run bounded.
        let mut build = cargo_in(repo, target_dir);
        build.args(["test", "-p", pkg, "--tests", "--no-run"]);
        let built = match run_bounded(build, Duration::from_secs(3600)) {
            Ok(r) => r,
            Err(e) => {
                for t in &tests {
                    set(t, false, e.clone());
                }
                continue;
            }
        };
        grade.warnings.extend(warnings(&built.stderr));
        if !built.ok {
            let why = match first_compile_error(&built.stderr) {
                Some(e) => format!("does not compile: {e}"),
                None => format!(
                    "cargo test --no-run failed: {}",
                    built.stderr.lines().last().unwrap_or("").trim()
                ),
            };
            for t in &tests {
                set(t, false, why.clone());
            }
            continue;
        }
        let mut run = cargo_in(repo, target_dir);
        run.args([
            "test",
            "-p",
            pkg,
            "--tests",
            "--no-fail-fast",
            "--",
            "--exact",
        ])
        .args(&tests);
        let limit = Duration::from_secs(300);
        let ran = match run_bounded(run, limit) {
            Ok(r) => r,
            Err(e) => {
                for t in &tests {
                    set(t, false, e.clone());
                }
                continue;
            }
        };
        let (verdicts, reasons) = parse_libtest(&ran.stdout);
        for t in &tests {
            match verdicts.get(*t) {
                Some(v) if v.iter().all(|&ok| ok) => set(t, true, String::new()),
                Some(_) => set(
                    t,
                    false,
                    reasons.get(*t).cloned().unwrap_or_else(|| "failed".into()),
                ),
                None if ran.timed_out => set(
                    t,
                    false,
                    format!(
                        "no verdict after {} s: killed (an endless loop?)",
                        limit.as_secs()
                    ),
                ),
                None => set(
                    t,
                    false,
                    format!("no test named exactly '{t}' ran in package {pkg} (exercise.txt?)"),
                ),
            }
        }
    }
    for h in &ex.host {
        let (ok, reason) = verdict
            .get(&(h.package.clone(), h.test.clone()))
            .cloned()
            .unwrap_or((false, "not run".into()));
        grade.checks.push(Check {
            kind: "host",
            name: format!("{} {}", h.package, h.test),
            ok,
            reason,
        });
    }
    grade
}

/// Parses the runner's `test NAME ... ok|FAILED` lines and the indented detail after a
/// failure.
fn parse_runner(stdout: &str) -> Vec<(String, bool, String)> {
    let lines: Vec<&str> = stdout.lines().collect();
    let mut v = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some((name, verdict)) = l.strip_prefix("test ").and_then(|r| r.rsplit_once(" ... "))
        else {
            continue;
        };
        let ok = verdict.trim() == "ok";
        let detail = if ok {
            String::new()
        } else {
            lines
                .get(i + 1)
                .filter(|d| d.starts_with("    "))
                .map_or(String::new(), |d| d.trim().to_string())
        };
        v.push((name.to_string(), ok, detail));
    }
    v
}

/// Runs each `qemu:` check in `repo` through its own runner (`boot test --only`), which
/// builds `repo`'s kernel and boots it the way `./run.sh test` does.
pub fn grade_qemu(ex: &Exercise, repo: &Path) -> Vec<Check> {
    let same = repo.canonicalize().ok() == own_root().canonicalize().ok();
    let mut checks = Vec::new();
    for q in &ex.qemu {
        let cmd = if same {
            let mut c = Command::new(std::env::current_exe().unwrap_or_else(|_| "boot".into()));
            c.current_dir(repo);
            c
        } else {
            let mut c = Command::new("cargo");
            c.current_dir(repo).args(["run", "-q", "-p", "boot", "--"]);
            c
        };
        let mut cmd = cmd;
        cmd.args(["test", "--only", q]);
        let check = match run_bounded(cmd, Duration::from_secs(3600)) {
            Err(e) => Check {
                kind: "qemu",
                name: q.clone(),
                ok: false,
                reason: e,
            },
            Ok(ran) => {
                let results: Vec<_> = parse_runner(&ran.stdout)
                    .into_iter()
                    .filter(|(n, _, _)| n.contains(q.as_str()))
                    .collect();
                let failed = results.iter().find(|(_, ok, _)| !ok);
                let (ok, reason) = if results.is_empty() {
                    // Not reached: say what stopped it (a build error, or the boot's
                    // own failure, e.g. a todo! panic while the kernel comes up).
                    let boot_failure = parse_runner(&ran.stdout)
                        .into_iter()
                        .find(|(_, ok, _)| !ok)
                        .map(|(n, _, d)| format!("not reached; {n} failed: {d}"));
                    let why = first_compile_error(&ran.stderr)
                        .map(|e| format!("the kernel does not compile: {e}"))
                        .or(boot_failure)
                        .unwrap_or_else(|| {
                            // The runner reports only names matching `--only`, so a
                            // kernel that died before the test is silent here.
                            let profile = q
                                .strip_prefix("qemu::")
                                .and_then(|r| r.split_once("::"))
                                .map_or("", |(p, _)| p);
                            format!(
                                "the test never reported: the kernel stopped before it \
                                 (a panic while booting?); `./run.sh test --only \
                                 qemu::{profile}::` shows the whole boot"
                            )
                        });
                    (false, shorten(&why, 240))
                } else if let Some((n, _, d)) = failed {
                    (false, shorten(&format!("{n}: {d}"), 240))
                } else {
                    (true, String::new())
                };
                Check {
                    kind: "qemu",
                    name: q.clone(),
                    ok,
                    reason,
                }
            }
        };
        checks.push(check);
    }
    checks
}

// ----- the commands -----

const USAGE: &str = "usage:
  run.sh exercise list
  run.sh exercise start <name>
  run.sh exercise cut <name> --out DIR
  run.sh exercise prove                  (the suite's check of every exercise)
  run.sh grade <name> [--repo PATH] [--host-only]";

/// `run.sh exercise ...` and `run.sh grade ...`; returns the exit status.
pub fn main(command: &str, args: &[String]) -> i32 {
    let r = match command {
        "exercise" => exercise_cmd(args),
        "grade" => grade_cmd(args),
        _ => Err(format!("unknown command '{command}'")),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{command}: {e}");
            eprintln!("{USAGE}");
            2
        }
    }
}

fn exercise_cmd(args: &[String]) -> Result<i32, String> {
    let root = own_root();
    match args.first().map(String::as_str) {
        Some("list") if args.len() == 1 => {
            let all = load_all(&root)?;
            if all.is_empty() {
                println!("no exercises (exercises/*/exercise.txt)");
            }
            for e in all {
                println!("{:<16} {:<7} {}", e.name, e.difficulty, e.summary);
            }
            Ok(0)
        }
        Some("start") if args.len() == 2 => start(&root, &args[1]),
        Some("prove") if args.len() == 1 => {
            // The suite's job alone (what `./run.sh test` runs as exercises::suite).
            let results = suite(&root);
            let failed = results.iter().filter(|(_, ok, _)| !ok).count();
            for (name, ok, detail) in &results {
                println!("test {name} ... {}", if *ok { "ok" } else { "FAILED" });
                for line in detail.lines() {
                    println!("    {line}");
                }
            }
            println!("{} passed, {failed} failed", results.len() - failed);
            Ok(if failed == 0 { 0 } else { 1 })
        }
        Some("cut") => {
            let (name, out) = match &args[1..] {
                [n, o, d] if o == "--out" => (n, d),
                _ => return Err("cut takes <name> --out DIR".into()),
            };
            find(&root, name)?;
            let cut = cut_files(&root, name)?;
            let out = PathBuf::from(out);
            sync_tree(&root, &out, &cut)?;
            for (rel, _) in &cut {
                println!("cut {}", rel.display());
            }
            println!("the tree of exercise {name} is in {}", out.display());
            Ok(0)
        }
        _ => Err("exercise takes list, start <name>, cut <name> --out DIR or prove".into()),
    }
}

fn start(root: &Path, name: &str) -> Result<i32, String> {
    let ex = find(root, name)?;
    let dirty = git(root, &["status", "--porcelain", "--untracked-files=no"])?;
    if !dirty.trim().is_empty() {
        return Err(format!(
            "the working tree has uncommitted changes; commit or stash them first:\n{}",
            dirty.trim_end()
        ));
    }
    let branch = format!("exercise/{name}");
    if git(
        root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .is_ok()
    {
        return Err(format!(
            "branch {branch} exists already: `git checkout {branch}` to go on with it, \
             or `git branch -D {branch}` to start again"
        ));
    }
    let cut = cut_files(root, name)?;
    git(root, &["checkout", "-q", "-b", &branch])?;
    for (rel, text) in &cut {
        let p = root.join(rel);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        git(root, &["add", "--", &rel.to_string_lossy()])?;
    }
    let msg = format!("exercise {name}: handout");
    let mut commit = vec!["commit", "-q", "-m", &msg];
    // A fresh clone may have no identity; the handout commit still needs one.
    let has_identity = git(root, &["config", "user.email"]).is_ok_and(|s| !s.trim().is_empty());
    let id = [
        "-c",
        "user.name=busmaster exercise",
        "-c",
        "user.email=exercise@busmaster.invalid",
    ];
    let mut full: Vec<&str> = Vec::new();
    if !has_identity {
        full.extend(id);
    }
    full.append(&mut commit);
    git(root, &full)?;
    println!("on branch {branch}: {} file(s) cut to stubs", cut.len());
    for (rel, _) in &cut {
        println!("  {}", rel.display());
    }
    println!("handout: {}", root.join(&ex.handout).display());
    println!("grade with: ./run.sh grade {name}");
    Ok(0)
}

fn grade_cmd(args: &[String]) -> Result<i32, String> {
    let root = own_root();
    let mut name = None;
    let mut repo = None;
    let mut host_only = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--repo" => repo = Some(PathBuf::from(it.next().ok_or("--repo needs a path")?)),
            "--host-only" => host_only = true,
            s if !s.starts_with('-') && name.is_none() => name = Some(s.to_string()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let name = name.ok_or("grade takes an exercise name")?;
    let ex = find(&root, &name)?;
    let repo = repo.unwrap_or_else(|| root.clone());
    if !repo.join("Cargo.toml").is_file() {
        return Err(format!(
            "{} is not a Busmaster checkout (no Cargo.toml)",
            repo.display()
        ));
    }
    println!("grading {name} in {}", repo.display());
    let grade = grade_host(&ex, &repo, None);
    let mut checks = grade.checks;
    for c in &checks {
        print_check(c);
    }
    if !host_only {
        for c in grade_qemu(&ex, &repo) {
            print_check(&c);
            checks.push(c);
        }
    }
    for w in &grade.warnings {
        println!("build {w}");
    }
    let passed = checks.iter().filter(|c| c.ok).count();
    println!("score: {passed}/{}", checks.len());
    Ok(if passed == checks.len() { 0 } else { 1 })
}

fn print_check(c: &Check) {
    if c.ok {
        println!("{} pass  {}", c.kind, c.name);
    } else {
        println!("{} fail  {}: {}", c.kind, c.name, c.reason);
    }
}

// ----- the suite's proof -----

/// The suite's check of every exercise: the cut tree builds and scores 0 on its host
/// checks, the reference scores full, `wrong.patch` scores below full. One scratch tree
/// (`target/exercise-suite/tree`) serves every variant, so a variant rebuilds only the
/// crates it changes. Returns (test name, ok, detail).
pub fn suite(root: &Path) -> Vec<(String, bool, String)> {
    let mut out = Vec::new();
    let all = match load_all(root) {
        Ok(a) => a,
        Err(e) => return vec![("exercises::load".into(), false, e)],
    };
    let tree = root.join("target/exercise-suite/tree");
    // The scratch tree outlives a run: files the checkout no longer has (moved or
    // split since) would still be compiled there.
    if let Err(e) = prune_untracked(root, &tree) {
        return vec![("exercises::scratch_tree".into(), false, e)];
    }
    // Its own target directory, never this checkout's: cargo hashes a workspace crate by
    // its path inside the workspace, so the scratch tree's `dma` and this checkout's
    // would share artifacts, and a stub's build could be taken for this checkout's.
    let target = root.join("target/exercise-suite/target");
    for ex in &all {
        let n = &ex.name;
        let t = ex.host.len();
        let case = |what: &str| format!("exercises::{n}::{what}");
        // Reference first: it also proves the checks exist and pass.
        let reference = sync_tree(root, &tree, &[]).map(|()| grade_host(ex, &tree, Some(&target)));
        out.push(match reference {
            Err(e) => (case("reference_scores_full"), false, e),
            Ok(g) => {
                let p = g.passed();
                let bad: Vec<String> = g
                    .checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| format!("{}: {}", c.name, c.reason))
                    .collect();
                (
                    case("reference_scores_full"),
                    p == t,
                    format!(
                        "score {p}/{t}{}",
                        if bad.is_empty() {
                            String::new()
                        } else {
                            format!("\n{}", bad.join("\n"))
                        }
                    ),
                )
            }
        });
        // The handout: every graded check fails, and it builds without new warnings.
        let stub = cut_files(root, n)
            .and_then(|cut| sync_tree(root, &tree, &cut))
            .map(|()| grade_host(ex, &tree, Some(&target)));
        out.push(match stub {
            Err(e) => (case("stub_builds_and_scores_zero"), false, e),
            Ok(g) => {
                let p = g.passed();
                let compiled = g
                    .checks
                    .iter()
                    .all(|c| !c.reason.starts_with("does not compile"));
                let passing: Vec<&str> = g
                    .checks
                    .iter()
                    .filter(|c| c.ok)
                    .map(|c| c.name.as_str())
                    .collect();
                let ok = p == 0 && compiled && g.warnings.is_empty();
                let mut detail = format!("score {p}/{t}");
                if !compiled {
                    detail.push_str(&format!("\n{}", g.checks[0].reason));
                }
                if !passing.is_empty() {
                    detail.push_str(&format!("\npasses on the stub: {}", passing.join(", ")));
                }
                if !g.warnings.is_empty() {
                    detail.push_str(&format!("\nwarnings: {}", g.warnings.join("; ")));
                }
                (case("stub_builds_and_scores_zero"), ok, detail)
            }
        });
        // The wrong answer: builds, and some check (not all) catches it.
        let patch = root.join("exercises").join(n).join("wrong.patch");
        let wrong = sync_tree(root, &tree, &[])
            .and_then(|()| apply_patch(&tree, &patch))
            .map(|()| grade_host(ex, &tree, Some(&target)));
        out.push(match wrong {
            Err(e) => (case("wrong_patch_scores_below_full"), false, e),
            Ok(g) => {
                let p = g.passed();
                let compiled = g
                    .checks
                    .iter()
                    .all(|c| !c.reason.starts_with("does not compile"));
                let caught: Vec<String> = g
                    .checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| format!("{}: {}", c.name, c.reason))
                    .collect();
                (
                    case("wrong_patch_scores_below_full"),
                    compiled && p < t && p > 0,
                    format!("score {p}/{t}\n{}", caught.join("\n")),
                )
            }
        });
    }
    // Leave the scratch tree as the reference.
    let _ = sync_tree(root, &tree, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: &str = "fn f(a: u32) -> u32 {
    // keep me
    // exercise(x): begin
    a + 1
    // exercise(x): stub
    // let _ = a;
    //
    // todo!(\"exercise x\")
    // exercise(x): end
}
// exercise(y): begin
fn g() {}
// exercise(y): stub
// fn g() { todo!() }
// exercise(y): end
";

    #[test]
    fn prune_removes_only_files_the_checkout_no_longer_tracks() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dest = std::env::temp_dir().join(format!("prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::create_dir_all(dest.join("crates/devmodels/src")).unwrap();
        // A file the checkout tracks, and one it moved away (a stale copy).
        std::fs::write(dest.join("Cargo.toml"), "x").unwrap();
        std::fs::write(dest.join("crates/devmodels/src/gone_since.rs"), "x").unwrap();
        let removed = prune_untracked(&root, &dest).unwrap();
        let kept = dest.join("Cargo.toml").exists();
        let stale = dest.join("crates/devmodels/src/gone_since.rs").exists();
        let _ = std::fs::remove_dir_all(&dest);
        assert_eq!(removed, 1);
        assert!(kept, "a tracked file was removed");
        assert!(!stale, "the stale file is still there");
    }

    #[test]
    fn cut_keeps_guidance_and_uncomments_the_stub() {
        let (cut, n) = cut_text(REGION, "x").unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            cut,
            "fn f(a: u32) -> u32 {
    // keep me
    let _ = a;

    todo!(\"exercise x\")
}
// exercise(y): begin
fn g() {}
// exercise(y): stub
// fn g() { todo!() }
// exercise(y): end
"
        );
        let (cut, n) = cut_text(REGION, "y").unwrap();
        assert_eq!(n, 1);
        assert!(cut.contains("a + 1") && cut.contains("fn g() { todo!() }"));
        assert!(!cut.contains("fn g() {}"));
        assert_eq!(cut_text(REGION, "z").unwrap(), (REGION.to_string(), 0));
    }

    #[test]
    fn broken_regions_are_errors_naming_the_line() {
        let nested = "// exercise(a): begin\n// exercise(b): begin\n";
        assert!(cut_text(nested, "a").unwrap_err().contains("line 2"));
        let unclosed = "// exercise(a): begin\nx\n// exercise(a): stub\n";
        assert!(cut_text(unclosed, "a").unwrap_err().contains("no `end`"));
        let no_stub = "// exercise(a): begin\nx\n// exercise(a): end\n";
        assert!(cut_text(no_stub, "a").is_err());
        let stray_end = "x\n// exercise(a): end\n";
        assert!(cut_text(stray_end, "a")
            .unwrap_err()
            .contains("without a `begin`"));
        let bad_stub = "// exercise(a): begin\nx\n// exercise(a): stub\ny\n// exercise(a): end\n";
        assert!(cut_text(bad_stub, "a")
            .unwrap_err()
            .contains("not a `// ` comment"));
    }

    #[test]
    fn exercise_txt_parses_and_rejects_bad_lines() {
        let e = parse_exercise(
            "swiotlb",
            "summary: bounce\ndifficulty: medium\nmirrors: swiotlb_tbl_map_single\n\
             host: dma tests::a\nhost: dma tests::b\nqemu: qemu::noiommu::x\n\
             handout: docs/exercises/swiotlb.md\n",
        )
        .unwrap();
        assert_eq!(e.host.len(), 2);
        assert_eq!(e.host[1].test, "tests::b");
        assert_eq!(e.qemu, vec!["qemu::noiommu::x".to_string()]);
        assert!(parse_exercise("x", "summary: s\ndifficulty: tricky\n")
            .unwrap_err()
            .contains("easy, medium or hard"));
        assert!(
            parse_exercise("x", "summary: s\ndifficulty: easy\nhandout: h\n")
                .unwrap_err()
                .contains("host")
        );
        assert!(parse_exercise("x", "host: dma\n")
            .unwrap_err()
            .contains(":1"));
    }

    #[test]
    fn failure_reasons_are_one_actionable_line() {
        let todo = "\nthread 'tests::a' panicked at crates/dma/src/swiotlb.rs:200:9:\n\
                    not yet implemented: exercise swiotlb: find slots\n\
                    note: run with `RUST_BACKTRACE=1`\n";
        let lines: Vec<&str> = todo.lines().collect();
        assert_eq!(
            failure_reason(&lines),
            "not yet written (todo!): exercise swiotlb: find slots (at crates/dma/src/swiotlb.rs:200:9)"
        );
        let eq = "thread 'tests::b' (4242) panicked at crates/dma/src/tests/bounce.rs:10:5:\n\
                  assertion `left == right` failed: unwritten bytes keep the original\n  \
                  left: [1]\n right: [2]\n";
        let lines: Vec<&str> = eq.lines().collect();
        assert_eq!(
            failure_reason(&lines),
            "assertion `left == right` failed: unwritten bytes keep the original, left: [1], \
             right: [2] (at crates/dma/src/tests/bounce.rs:10:5)"
        );
        let err = "   Compiling dma v0.1.0\nerror[E0425]: cannot find value `x` in this scope\n   \
                   --> crates/dma/src/swiotlb.rs:5:9\n    |\nerror: could not compile `dma`\n";
        assert_eq!(
            first_compile_error(err).unwrap(),
            "error[E0425]: cannot find value `x` in this scope (crates/dma/src/swiotlb.rs:5:9)"
        );
    }

    #[test]
    fn libtest_and_runner_output_parse() {
        let out = "running 2 tests\ntest a::x ... ok\ntest a::y ... FAILED\n\nfailures:\n\n\
                   ---- a::y stdout ----\nthread 'a::y' panicked at f.rs:1:1:\nboom\n\n\
                   failures:\n    a::y\n";
        let (v, r) = parse_libtest(out);
        assert_eq!(v["a::x"], vec![true]);
        assert_eq!(v["a::y"], vec![false]);
        assert_eq!(r["a::y"], "boom (at f.rs:1:1)");
        let runner =
            "test qemu::noiommu::dma::x ... ok\ntest qemu::noiommu::lab::y ... FAILED\n    \
                      expected 'bounced' not in output\n";
        let p = parse_runner(runner);
        assert_eq!(p.len(), 2);
        assert!(p[0].1 && !p[1].1);
        assert_eq!(p[1].2, "expected 'bounced' not in output");
    }

    /// Every exercise in this checkout parses and cuts (cheap: no build).
    #[test]
    fn every_exercise_of_this_checkout_cuts() {
        let root = own_root();
        for ex in load_all(&root).unwrap() {
            let cut = cut_files(&root, &ex.name).unwrap();
            assert!(!cut.is_empty(), "{}", ex.name);
            assert!(
                root.join(&ex.handout).is_file(),
                "{}: handout missing",
                ex.name
            );
            assert!(
                root.join("exercises")
                    .join(&ex.name)
                    .join("wrong.patch")
                    .is_file(),
                "{}: wrong.patch missing",
                ex.name
            );
        }
    }
}
