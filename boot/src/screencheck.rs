//! End to end through the screen-and-keyboard console: keys pressed on
//! QEMU's PS/2 keyboard (monitor `sendkey`) reach the shell, and what the
//! shell shows is on the screen (monitor `screendump`), pixel for pixel the
//! text that `fbcon` renders here on the host with the kernel's own code.

use std::time::{Duration, Instant};

use fbcon::{Console, Geometry, PixelFormat, CELL_HEIGHT};

use crate::profile::{self, Images, Launch, SerialMode};
use crate::qemu::{self, Console as SerialConsole, Session};

/// A binary PPM (P6, 8 bits per channel), what `screendump` writes.
#[derive(Debug)]
pub struct Ppm {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

pub fn parse_ppm(bytes: &[u8]) -> Result<Ppm, String> {
    // Header: "P6", width, height, maxval, each separated by whitespace
    // (with '#' comments), then one whitespace byte and the pixels.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'#') {
            if bytes[i] == b'#' {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            return Err("PPM header ends early".into());
        }
        fields.push(String::from_utf8_lossy(&bytes[start..i]).into_owned());
    }
    if fields[0] != "P6" {
        return Err(format!("not a binary PPM (magic {:?})", fields[0]));
    }
    let num = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| format!("bad PPM number {s:?}"))
    };
    let (width, height, max) = (num(&fields[1])?, num(&fields[2])?, num(&fields[3])?);
    if max != 255 {
        return Err(format!("PPM maxval {max}, expected 255"));
    }
    let data = &bytes[(i + 1).min(bytes.len())..];
    let need = width * height * 3;
    if data.len() < need {
        return Err(format!(
            "PPM has {} pixel bytes, {width}x{height} needs {need}",
            data.len()
        ));
    }
    Ok(Ppm {
        width,
        height,
        rgb: data[..need].to_vec(),
    })
}

/// One text row as the kernel draws it on a screen `width` pixels wide:
/// `text` from column 0, the rest blank, the cursor after the text if `cursor`.
pub fn render_row(width: usize, text: &str, cursor: bool) -> Result<Vec<u8>, String> {
    let geo = Geometry {
        width,
        height: CELL_HEIGHT,
        stride: width,
        bytes_per_pixel: 3,
        format: PixelFormat::Rgb,
    };
    let mut c = Console::new(vec![0u8; geo.bytes_needed()], geo).map_err(|e| e.to_string())?;
    if !cursor {
        c.write(b"\x1b[?25l");
    }
    c.write(text.as_bytes());
    c.flush();
    Ok(c.buffer().to_vec())
}

/// Text rows (from the top, CELL_HEIGHT pixels each) whose pixels equal `row`.
pub fn rows_matching(ppm: &Ppm, row: &[u8]) -> Vec<usize> {
    let strip = ppm.width * 3 * CELL_HEIGHT;
    if row.len() != strip {
        return vec![];
    }
    (0..ppm.height / CELL_HEIGHT)
        .filter(|r| &ppm.rgb[r * strip..(r + 1) * strip] == row)
        .collect()
}

/// Text rows that have any pixel other than the background (black).
pub fn inked_rows(ppm: &Ppm) -> usize {
    let strip = ppm.width * 3 * CELL_HEIGHT;
    (0..ppm.height / CELL_HEIGHT)
        .filter(|r| ppm.rgb[r * strip..(r + 1) * strip].iter().any(|&b| b != 0))
        .count()
}

/// Keys for `sendkey`, one press each.
fn press(sock: &std::path::Path, keys: &[&str]) -> Result<(), String> {
    for k in keys {
        let out = qemu::monitor_command(sock, &format!("sendkey {k}"))?;
        if !out.trim().is_empty() {
            return Err(format!("sendkey {k}: {}", out.trim()));
        }
    }
    Ok(())
}

const TYPED: &str = "busmaster> uptime";
const ERROR: &str = "error: HI: unknown command ('help' lists the commands)";

/// Boots `profile_name`, types on the PS/2 keyboard and checks the serial
/// output and the screen. Returns a one-line summary.
pub fn check(images: &Images, profile_name: &str) -> Result<String, String> {
    let profile = profile::find(profile_name)
        .ok_or("unknown profile")?
        .clone();
    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    let sock = tmp.join(format!("busmaster-kbd-{pid}-{profile_name}.sock"));
    let dump = tmp.join(format!("busmaster-screen-{pid}-{profile_name}.ppm"));
    let _ = std::fs::remove_file(&sock);
    let launch = Launch {
        firmware: profile.firmware,
        profile,
        cmdline: String::new(),
        serial: SerialMode::Piped,
        no_reboot: true,
        monitor: Some(sock.clone()),
        extra: vec![],
    };
    let mut con = SerialConsole::new(Session::spawn(&launch, images)?);
    let result = (|| {
        con.wait_for(qemu::PROMPT_STR, qemu::EVENT)?;
        // "uptimx", Backspace, "e", Enter: the editor sees DEL and erases.
        press(
            &sock,
            &["u", "p", "t", "i", "m", "x", "backspace", "e", "ret"],
        )?;
        con.wait_for(" s (TSC ", qemu::EVENT)
            .map_err(|e| format!("keyboard 'uptime' did not run: {e}"))?;
        con.wait_for(qemu::PROMPT_STR, qemu::EVENT)?;
        // Shift makes capitals: the shell gets "HI".
        press(&sock, &["shift-h", "shift-i", "ret"])?;
        con.wait_for("HI: unknown command", qemu::EVENT)
            .map_err(|e| format!("shifted keys: {e}"))?;
        con.wait_for(qemu::PROMPT_STR, qemu::EVENT)?;
        // The serial prompt comes before the screen is drawn (a redraw may be
        // held back for a moment): look again until it shows or the bound passes.
        let start = Instant::now();
        loop {
            let _ = std::fs::remove_file(&dump);
            qemu::monitor_command(&sock, &format!("screendump {}", dump.display()))?;
            let bytes = std::fs::read(&dump).map_err(|e| format!("reading the screendump: {e}"))?;
            let ppm = parse_ppm(&bytes)?;
            let typed = rows_matching(&ppm, &render_row(ppm.width, TYPED, false)?);
            let error = rows_matching(&ppm, &render_row(ppm.width, ERROR, false)?);
            let prompt = rows_matching(&ppm, &render_row(ppm.width, qemu::PROMPT_STR, true)?);
            let last = |v: &[usize]| v.last().copied();
            let ok = matches!(
                (last(&typed), last(&error), last(&prompt)),
                (Some(t), Some(e), Some(p)) if t < e && e + 1 == p
            );
            if ok {
                let _ = std::fs::remove_file(&dump);
                return Ok(format!(
                    "{}x{} screen, {} rows with text; typed line on row {}, prompt on row {}",
                    ppm.width,
                    ppm.height,
                    inked_rows(&ppm),
                    last(&typed).unwrap_or(0),
                    last(&prompt).unwrap_or(0)
                ));
            }
            if start.elapsed() > qemu::EVENT {
                let keep =
                    std::path::Path::new("target").join(format!("screen-{profile_name}.ppm"));
                let _ = std::fs::copy(&dump, &keep);
                return Err(format!(
                    "screen does not show the session: rows drawn like {TYPED:?}: {typed:?}, like the error: {error:?}, \
                     like the prompt with cursor: {prompt:?} ({} rows with text; screendump kept in {})",
                    inked_rows(&ppm),
                    keep.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })();
    con.type_line("poweroff");
    let _ = con.wait_exit(qemu::EVENT);
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&dump);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ppm_from_rows(width: usize, rows: &[Vec<u8>]) -> Ppm {
        Ppm {
            width,
            height: rows.len() * CELL_HEIGHT,
            rgb: rows.concat(),
        }
    }

    #[test]
    fn ppm_header_with_comment_parses() {
        let mut b = b"P6\n# made by hand\n2 1\n255\n".to_vec();
        b.extend([1, 2, 3, 4, 5, 6]);
        let p = parse_ppm(&b).unwrap();
        assert_eq!((p.width, p.height), (2, 1));
        assert_eq!(p.rgb, [1, 2, 3, 4, 5, 6]);
        assert!(parse_ppm(b"P3\n1 1\n255\n").is_err());
        assert!(parse_ppm(b"P6\n2 2\n255\n\x00\x00\x00")
            .unwrap_err()
            .contains("needs 12"));
        assert!(parse_ppm(b"P6\n2").is_err());
    }

    #[test]
    fn rendered_rows_are_found_only_where_they_are() {
        let w = 9 * 30;
        let blank = render_row(w, "", false).unwrap();
        let typed = render_row(w, "busmaster> uptime", false).unwrap();
        let prompt = render_row(w, "busmaster> ", true).unwrap();
        let ppm = ppm_from_rows(w, &[typed.clone(), blank.clone(), prompt.clone()]);
        assert_eq!(rows_matching(&ppm, &typed), [0]);
        assert_eq!(rows_matching(&ppm, &prompt), [2]);
        assert_eq!(rows_matching(&ppm, &blank), [1]);
        assert_eq!(inked_rows(&ppm), 2);
        // one letter different, or the cursor missing, is not a match
        assert!(
            rows_matching(&ppm, &render_row(w, "busmaster> uptimf", false).unwrap()).is_empty()
        );
        assert!(rows_matching(&ppm, &render_row(w, "busmaster> ", false).unwrap()).is_empty());
    }
}
