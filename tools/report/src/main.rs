//! `report --log FILE [--out FILE]`: renders a Busmaster serial log as one
//! HTML page (the runner's `./run.sh report` boots a kernel for the log).

use std::path::PathBuf;

const USAGE: &str =
    "usage: report --log SERIAL_LOG [--out PAGE.html]   (default out: the log's name with .html)";

fn main() {
    let mut log: Option<PathBuf> = None;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--log" => log = args.next().map(PathBuf::from),
            "--out" => out = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other if log.is_none() && !other.starts_with('-') => log = Some(other.into()),
            other => {
                eprintln!("report: unknown argument '{other}'\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let Some(log) = log else {
        eprintln!("report: no log given\n{USAGE}");
        std::process::exit(2);
    };
    let out = out.unwrap_or_else(|| log.with_extension("html"));
    match report::write_page(&log, &out) {
        Ok(()) => println!("{}", out.display()),
        Err(e) => {
            eprintln!("report: {e}");
            std::process::exit(1);
        }
    }
}
