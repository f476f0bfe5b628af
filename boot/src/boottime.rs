//! `./run.sh boot-time`: how long from QEMU's start to the shell prompt (and
//! to QEMU's exit after `poweroff`), BIOS and UEFI, beside Debian's Linux
//! booted directly by QEMU in the same machine and the same run (the shared
//! `linux-oracle.sh`, which prints `WALL <seconds>` from QEMU's start to its
//! exit). Runs are interleaved, so a host that gets busier part-way through
//! weighs on both sides alike. A benchmark that prints figures, not a test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::profile::{Images, Launch};
use crate::qemu::{self, Limits, Session};

/// The oracle script's usual place: `../shared/tools/` beside the checkout.
pub fn default_oracle() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/tools/linux-oracle.sh"
    ))
}

/// One boot of ours: seconds to the prompt and to QEMU's exit.
fn ours(images: &Images, launch: &Launch) -> Result<(f64, f64), String> {
    let start = Instant::now();
    let session = Session::spawn(launch, images)?;
    qemu::feed_input(&session, b"poweroff\n");
    let t = qemu::drive(session, &Limits::generous(), false);
    let prompt = t
        .first_prompt
        .ok_or_else(|| format!("{}: no prompt ({})", launch.profile.name, t.end.describe()))?;
    Ok((prompt.as_secs_f64(), start.elapsed().as_secs_f64()))
}

/// One boot of the oracle: (WALL, Linux's own uptime when its init ran).
fn linux(script: &Path) -> Result<(f64, Option<f64>), String> {
    let out = Command::new("bash")
        .arg(script)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_oracle(&text).ok_or_else(|| {
        format!(
            "{} printed no WALL line (status {}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )
    })
}

/// `WALL 9.61` and `LINUX-READY uptime 4.20` from the oracle's output.
pub fn parse_oracle(text: &str) -> Option<(f64, Option<f64>)> {
    let wall = text
        .lines()
        .find_map(|l| l.strip_prefix("WALL ")?.trim().parse().ok())?;
    let ready = text.lines().find_map(|l| {
        l.strip_prefix("LINUX-READY uptime ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    Some((wall, ready))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|t| format!("{t:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `runs` rounds (BIOS, UEFI, then the oracle when there is one) and
/// returns the report.
pub fn measure(
    images: &Images,
    launch: &dyn Fn(&str) -> Launch,
    runs: usize,
    oracle: Option<&Path>,
) -> Result<String, String> {
    let oracle = oracle.filter(|p| p.exists());
    let (mut bios, mut bios_exit, mut uefi, mut wall, mut ready) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let (p, e) = ours(images, &launch("default"))?;
        bios.push(p);
        bios_exit.push(e);
        uefi.push(ours(images, &launch("uefi"))?.0);
        if let Some(script) = oracle {
            let (w, r) = linux(script)?;
            wall.push(w);
            ready.extend(r);
        }
    }
    let mut s = String::new();
    let b = median(&mut bios);
    let be = median(&mut bios_exit);
    s.push_str(&format!(
        "boot-time bios: QEMU start -> prompt median {b:.2} s over {runs} runs [{}]; -> exit after poweroff median {be:.2} s\n",
        list(&bios)
    ));
    let u = median(&mut uefi);
    s.push_str(&format!(
        "boot-time uefi: QEMU start -> prompt median {u:.2} s over {runs} runs [{}]\n",
        list(&uefi)
    ));
    match oracle {
        Some(script) => {
            let w = median(&mut wall);
            s.push_str(&format!(
                "boot-time linux ({}): QEMU start -> exit (WALL) median {w:.2} s [{}]",
                script.display(),
                list(&wall)
            ));
            if !ready.is_empty() {
                s.push_str(&format!(
                    "; its init ran at {:.2} s of Linux's uptime",
                    median(&mut ready)
                ));
            }
            s.push('\n');
            s.push_str(&format!(
                "ratio bios/linux: {:.2} to the prompt, {:.2} to exit (goal <= 0.33)\n",
                b / w,
                be / w
            ));
        }
        None => s.push_str(
            "no Linux oracle (../shared/tools/linux-oracle.sh not found, or --no-oracle)\n",
        ),
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_output_parses() {
        let text =
            "PCI 0000:00:00.0 0x8086 0x29c0 0x060000\nLINUX-READY uptime 4.21 3.90\nWALL 9.613\n";
        assert_eq!(parse_oracle(text), Some((9.613, Some(4.21))));
        assert_eq!(parse_oracle("WALL 2.5\n"), Some((2.5, None)));
        assert_eq!(parse_oracle("LINUX-READY uptime 1\n"), None);
        assert_eq!(parse_oracle("WALL x\n"), None);
    }

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [5.0]), 5.0);
    }
}
