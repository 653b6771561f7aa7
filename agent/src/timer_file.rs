//! Where the offline timer keeps its count: `STATE/offline-timer.slots`, a file of fixed size
//! made once and from then on written in place.
//!
//! A file replaced at every write (a new file, then a rename) needs free space for the new
//! file, so a full disk stops it, and anyone who can fill the disk could then stall the
//! timer (attack review M2). This file is made whole once (real bytes, not a sparse file),
//! and every later write overwrites bytes that already exist (`pwrite` into its blocks, then
//! `fdatasync`), which needs no new space on filesystems that overwrite in place (ext4 and
//! tmpfs: `offline_tests.rs` fills both and writes on). Copy-on-write filesystems (btrfs, ZFS) allocate on every write and can still
//! refuse it when full: the timer then withholds the key (see `offline.rs`).
//!
//! Two slots, written in turn, each with a sequence number and a CRC-32C: a write torn by a
//! power cut damages only the slot being written, and the other still holds the count before
//! it.

use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ward_files::replace_file;

/// The file's size: two slots.
pub const FILE_BYTES: usize = 2 * SLOT_BYTES;
const SLOT_BYTES: usize = 2048;
const MAGIC: &[u8; 8] = b"WTIMER01";
/// Magic, sequence number, length, checksum.
const HEADER_BYTES: usize = 8 + 8 + 4 + 4;
/// The largest record a slot holds.
pub const MAX_RECORD: usize = SLOT_BYTES - HEADER_BYTES;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("offline-timer.slots")
}

/// The newest intact slot: its sequence number and record. `Ok(None)` when there is no file;
/// `Err` when there is one but no slot in it is intact.
pub fn read(path: &Path) -> io::Result<Option<(u64, Vec<u8>)>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    bytes
        .chunks(SLOT_BYTES)
        .take(2)
        .filter_map(decode)
        .max_by_key(|(seq, _)| *seq)
        .map(Some)
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "no intact slot in it"))
}

fn decode(slot: &[u8]) -> Option<(u64, Vec<u8>)> {
    let header = slot.get(..HEADER_BYTES)?;
    if &header[..8] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(header[16..20].try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(header[20..24].try_into().ok()?);
    let record = slot.get(HEADER_BYTES..HEADER_BYTES + len)?;
    (checksum(seq, record) == sum).then(|| (seq, record.to_vec()))
}

fn checksum(seq: u64, record: &[u8]) -> u32 {
    let mut digest = CRC.digest();
    digest.update(&seq.to_le_bytes());
    digest.update(record);
    digest.finalize()
}

/// One slot's bytes, the whole slot (zeros after the record, so old bytes never linger).
fn encode(seq: u64, record: &[u8]) -> io::Result<Vec<u8>> {
    if record.len() > MAX_RECORD {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the timer's record is {} bytes, more than a slot's {MAX_RECORD}",
                record.len()
            ),
        ));
    }
    let mut slot = Vec::with_capacity(SLOT_BYTES);
    slot.extend_from_slice(MAGIC);
    slot.extend_from_slice(&seq.to_le_bytes());
    slot.extend_from_slice(
        &u32::try_from(record.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    slot.extend_from_slice(&checksum(seq, record).to_le_bytes());
    slot.extend_from_slice(record);
    slot.resize(SLOT_BYTES, 0);
    Ok(slot)
}

/// Writes `record` as number `seq` into slot `seq % 2`, in place, and syncs it. A file that is
/// missing or not of the right size is made anew (that once needs free space).
pub fn write(path: &Path, seq: u64, record: &[u8]) -> io::Result<()> {
    let slot = encode(seq, record)?;
    match open_whole(path)? {
        Some(file) => {
            let offset = (seq % 2) * SLOT_BYTES as u64;
            file.write_all_at(&slot, offset)?;
            file.sync_data()
        }
        None => {
            // Made whole at once: both slots' bytes exist from now on.
            let mut whole = vec![0; FILE_BYTES];
            let at = (seq % 2) as usize * SLOT_BYTES;
            whole[at..at + SLOT_BYTES].copy_from_slice(&slot);
            replace_file(path, &whole, 0o600)
        }
    }
}

/// The file opened for writing in place, or `None` if it must be made (missing, or not of the
/// right size). Never follows a link.
fn open_whole(path: &Path) -> io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags};
    let file = match rustix::fs::openat(
        rustix::fs::CWD,
        path,
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    Ok((meta.is_file() && meta.len() == FILE_BYTES as u64).then_some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_intact_slot_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let file = path(tmp.path());
        assert!(read(&file).unwrap().is_none());
        write(&file, 1, b"one").unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), FILE_BYTES as u64);
        write(&file, 2, b"two").unwrap();
        write(&file, 3, b"three").unwrap();
        assert_eq!(read(&file).unwrap(), Some((3, b"three".to_vec())));

        // A write torn by a power cut: slot 1 (number 3) damaged; number 2 is read.
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[SLOT_BYTES + HEADER_BYTES] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(read(&file).unwrap(), Some((2, b"two".to_vec())));

        // Both damaged: an error, not "no record".
        bytes[HEADER_BYTES] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        assert!(read(&file).is_err());
        // A file of the wrong size is made anew.
        std::fs::write(&file, b"short").unwrap();
        write(&file, 4, b"four").unwrap();
        assert_eq!(read(&file).unwrap(), Some((4, b"four".to_vec())));
    }

    #[test]
    fn a_record_too_big_for_a_slot_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let e = write(&path(tmp.path()), 1, &[b'x'; MAX_RECORD + 1]).unwrap_err();
        assert!(e.to_string().contains("more than a slot"), "{e}");
    }
}
