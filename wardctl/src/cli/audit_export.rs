//! `wardctl audit export`: the audit log as JSON lines, one entry a line, oldest first, for an
//! archive or a SIEM. Written page by page as the controller answers (a log of millions of
//! entries is never held in memory). Each line carries the entry's stored details text
//! (`details_json`), so anyone can recompute the hash chain from the export alone.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use ward_proto::v1::{AuditEntry, ListAuditRequest};

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::CliError;
use ward_core::Timestamp;

/// One exported entry.
#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    at: String,
    actor: &'a str,
    /// The admin's plain name when an admin acted (null otherwise; not part of the hash).
    admin: Option<String>,
    action: &'a str,
    target: &'a str,
    /// The details, parsed (null if the stored text is not JSON).
    details: serde_json::Value,
    /// The details exactly as stored and hashed.
    details_json: &'a str,
    prev_hash: &'a str,
    hash: &'a str,
}

fn line(e: &AuditEntry) -> Line<'_> {
    Line {
        seq: e.seq,
        at: Timestamp::from_unix_ms(e.at_unix_ms).rfc3339(),
        actor: &e.actor,
        admin: super::audit::admin_name(&e.actor),
        action: &e.action,
        target: &e.target,
        details: serde_json::from_str(&e.details_json).unwrap_or(serde_json::Value::Null),
        details_json: &e.details_json,
        prev_hash: &e.prev_hash,
        hash: &e.hash,
    }
}

/// Where the lines go: standard output, or a new file (mode 0600, never over an existing
/// one). The file is written as `FILE.partial` and takes its name only once complete, so an
/// export that fails or is interrupted never leaves a file that looks whole.
enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    File {
        writer: BufWriter<std::fs::File>,
        partial: PathBuf,
        out: PathBuf,
    },
}

fn never_overwrites(path: &Path, e: &std::io::Error) -> CliError {
    CliError::usage(format!(
        "cannot create {}: {e} (its directory must exist and the file must not: the export never overwrites)",
        path.display()
    ))
}

impl Sink {
    fn open(out: Option<&Path>) -> Result<Self, CliError> {
        let Some(path) = out else {
            return Ok(Sink::Stdout(BufWriter::new(std::io::stdout())));
        };
        if std::fs::symlink_metadata(path).is_ok() {
            let exists = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
            return Err(never_overwrites(path, &exists));
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| never_overwrites(&partial, &e))?;
        Ok(Sink::File {
            writer: BufWriter::new(file),
            partial,
            out: path.to_path_buf(),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(w) => w,
            Sink::File { writer, .. } => writer,
        }
    }

    /// Flushes, and gives a file export its name (a hard link: never over an existing file).
    fn finish(self) -> Result<(), CliError> {
        match self {
            Sink::Stdout(mut w) => w.flush().map_err(write_error),
            Sink::File {
                writer,
                partial,
                out,
            } => {
                let done = writer
                    .into_inner()
                    .map_err(|e| write_error(e.into_error()))
                    .and_then(|file| file.sync_all().map_err(write_error))
                    .and_then(|()| {
                        std::fs::hard_link(&partial, &out).map_err(|e| never_overwrites(&out, &e))
                    });
                let _ = std::fs::remove_file(&partial);
                done
            }
        }
    }

    fn abandon(self) {
        if let Sink::File {
            writer, partial, ..
        } = self
        {
            drop(writer);
            let _ = std::fs::remove_file(partial);
        }
    }
}

fn write_error(e: std::io::Error) -> CliError {
    CliError::failed(format!("cannot write the export: {e}"))
}

/// Exports the entries `request` selects; the number written.
pub(super) async fn export(
    mut request: ListAuditRequest,
    out: Option<&Path>,
    connect: &ConnectArgs,
) -> Result<u64, CliError> {
    let mut client = admin_client(connect).await?;
    let mut sink = Sink::open(out)?;
    let mut written = 0u64;
    let result: Result<(), CliError> = async {
        loop {
            let page = client.list_audit(request.clone()).await?.into_inner();
            for entry in &page.entries {
                serde_json::to_writer(sink.writer(), &line(entry))
                    .map_err(|e| CliError::failed(format!("cannot write the export: {e}")))?;
                sink.writer().write_all(b"\n").map_err(write_error)?;
                written += 1;
            }
            match (page.truncated, page.entries.last()) {
                (true, Some(last)) => request.after_seq = last.seq,
                _ => return Ok(()),
            }
        }
    }
    .await;
    match result {
        Ok(()) => {
            sink.finish()?;
            if let Some(path) = out {
                eprintln!("{written} audit entries written to {}", path.display());
            }
            Ok(written)
        }
        Err(e) => {
            sink.abandon();
            Err(e)
        }
    }
}
