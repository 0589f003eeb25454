//! A bounded on-disk spool of record batches, for while the control plane is unreachable.
//!
//! One file per batch (`<sequence>.jsonl`, one JSON record per line), written to a temporary
//! name, fsync'd, renamed into place and the directory fsync'd: a batch is either wholly in the
//! spool or not at all, and it survives a crash or restart. Batches are sent oldest first and
//! deleted once the control plane has stored them. Over `max_records`, the oldest batches are
//! deleted (and counted as dropped): the newest usage is kept. Record-type agnostic: any
//! `Serialize + DeserializeOwned` record (usage now; cache hits and guardrail blocks later).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The spool of one record kind (one directory).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_records: u64,
    /// `(sequence, records)`, oldest first.
    files: VecDeque<(u64, u64)>,
    next_seq: u64,
    records: u64,
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.jsonl")
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    /// Opens (creating) `dir`, finding the batches a previous run left.
    pub fn open(dir: &Path, max_records: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                // A batch whose write did not complete: it was never acknowledged as spooled.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(seq) = name
                .strip_suffix(".jsonl")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let lines = BufReader::new(File::open(entry.path())?).lines().count() as u64;
            files.push((seq, lines));
        }
        files.sort_unstable();
        let next_seq = files.last().map_or(1, |(s, _)| s + 1);
        let records = files.iter().map(|(_, n)| n).sum();
        Ok(Self {
            dir: dir.to_owned(),
            max_records,
            files: files.into(),
            next_seq,
            records,
        })
    }

    /// Records held.
    pub fn depth(&self) -> u64 {
        self.records
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Writes a batch durably; returns how many old records were dropped to stay in bounds.
    pub fn push<T: Serialize>(&mut self, batch: &[T]) -> io::Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let seq = self.next_seq;
        let path = self.dir.join(file_name(seq));
        let tmp = self.dir.join(format!("{}.tmp", file_name(seq)));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let mut buf = Vec::with_capacity(batch.len() * 256);
            for r in batch {
                serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
                buf.push(b'\n');
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        self.next_seq += 1;
        self.files.push_back((seq, batch.len() as u64));
        self.records += batch.len() as u64;
        let mut dropped = 0;
        while self.records > self.max_records && self.files.len() > 1 {
            if let Some((old, n)) = self.files.pop_front() {
                let _ = fs::remove_file(self.dir.join(file_name(old)));
                self.records -= n;
                dropped += n;
            }
        }
        Ok(dropped)
    }

    /// The oldest batch: its sequence and records (unreadable lines are skipped).
    pub fn oldest<T: DeserializeOwned>(&self) -> io::Result<Option<(u64, Vec<T>)>> {
        let Some(&(seq, _)) = self.files.front() else {
            return Ok(None);
        };
        let f = File::open(self.dir.join(file_name(seq)))?;
        let records = BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect();
        Ok(Some((seq, records)))
    }

    /// Deletes a sent batch.
    pub fn remove(&mut self, seq: u64) -> io::Result<()> {
        if let Some(pos) = self.files.iter().position(|(s, _)| *s == seq) {
            if let Some((_, n)) = self.files.remove(pos) {
                self.records -= n;
            }
            fs::remove_file(self.dir.join(file_name(seq)))?;
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_reopen_and_the_oldest_are_dropped_over_the_bound() {
        let dir = std::env::temp_dir().join(format!("spool-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut s = Spool::open(&dir, 5).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.push(&[1u32, 2]).unwrap_or(99), 0);
        assert_eq!(s.push(&[3u32, 4]).unwrap_or(99), 0);
        fs::write(dir.join("00000000000000000009.jsonl.tmp"), "junk").unwrap_or(());
        let mut s = Spool::open(&dir, 5).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.depth(), 4);
        assert!(!dir.join("00000000000000000009.jsonl.tmp").exists());
        // Over 5: the oldest batch (2 records) goes.
        assert_eq!(s.push(&[5u32, 6]).unwrap_or(99), 2);
        let (seq, batch) = s.oldest::<u32>().ok().flatten().unwrap_or_default();
        assert_eq!(batch, vec![3, 4]);
        s.remove(seq).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.depth(), 2);
        let _ = fs::remove_dir_all(&dir);
    }
}
