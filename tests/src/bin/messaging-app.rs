//! A stand-in for the messaging app, for the end-to-end tests: it runs as the app's own
//! (unprivileged) user and does what a real app does with Ward's agent.
//!
//! ```text
//! messaging-app seed DIR       write message files holding the canary into DIR, the way an
//!                              app that resists deletion might (mode 0000 file, read-only and
//!                              sticky directories); prints how many files it wrote
//! messaging-app key SOCKET     ask the agent's local API for the data key; prints the key
//!                              (base64) on stdout, or the agent's refusal on stderr (exit 1)
//! ```
//! Test tool only: a real app keeps the key in memory and never prints it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

use ward_e2e::process::CANARY;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["seed", dir] => seed(Path::new(dir)),
        ["key", socket] => key(Path::new(socket)),
        _ => {
            eprintln!("usage: messaging-app seed DIR | messaging-app key SOCKET");
            ExitCode::from(2)
        }
    }
}

fn seed(dir: &Path) -> ExitCode {
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    std::fs::create_dir_all(dir.join("attachments")).unwrap();
    std::fs::create_dir_all(dir.join("archive/2026")).unwrap();
    std::fs::write(dir.join("messages.db"), CANARY.repeat(50)).unwrap();
    std::fs::write(dir.join("attachments/scan.txt"), CANARY).unwrap();
    std::fs::write(dir.join("archive/2026/thread.msg"), CANARY).unwrap();
    std::fs::write(dir.join("draft.msg"), CANARY).unwrap();
    // Nobody may read or write it: only an override of file permissions can overwrite it.
    mode(&dir.join("draft.msg"), 0o000);
    // Read-only directories: deleting inside them needs an override too.
    mode(&dir.join("archive/2026"), 0o500);
    // Sticky: only the owner of a file (or of the directory) may delete it.
    mode(&dir.join("attachments"), 0o1700);
    mode(dir, 0o700);
    println!("4");
    ExitCode::SUCCESS
}

fn key(socket: &Path) -> ExitCode {
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("cannot connect to {}: {e}", socket.display());
            return ExitCode::from(1);
        }
    };
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"{\"op\":\"key\"}\n").unwrap();
    let mut line = String::new();
    if let Err(e) = BufReader::new(&stream).read_line(&mut line) {
        eprintln!("no answer from {}: {e}", socket.display());
        return ExitCode::from(1);
    }
    let answer: serde_json::Value = match serde_json::from_str(&line) {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("not JSON ({e}): {line}");
            return ExitCode::from(1);
        }
    };
    match answer["key"].as_str() {
        Some(key) => {
            println!("{key}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("no key: {line}");
            ExitCode::from(1)
        }
    }
}
