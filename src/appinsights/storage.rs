//! Offline storage: telemetry that cannot be delivered now, kept on disk
//! and sent later, by this process or the next one.
//!
//! # Where
//!
//! Each instrumentation key and endpoint has a directory of its own,
//! `<base>/tracing-appinsights-<16 hex digits>` (see [`dir_name`]), named by
//! a hash so that the key is never written in a path (paths appear in
//! logs). `<base>` is the application's directory
//! (`Builder::with_storage_dir`), which is only ever looked into: nothing in
//! it but our own directory is created, read, changed or deleted, and its
//! mode is never changed. Without one it is [`default_base`], a per-user
//! directory under the system's temporary directory, which is ours like our
//! own directory.
//!
//! A directory of ours is created mode 0700 (with any missing parent). One
//! that exists already is used only if it is a real directory (not a
//! symbolic link), belongs to the user we run as, and no other user may
//! write to it; otherwise the storage is unavailable (reported, counted in
//! `dropped_storage_unavailable`, tried again later). It is refused rather
//! than repaired: a directory we did not make private may hold what others
//! put there, and its mode is someone's decision.
//!
//! # Files
//!
//! The format is that of the Python exporters' `LocalFileStorage`
//! (`opencensus-ext-azure` and `azure-monitor-opentelemetry-exporter`), so
//! the layout is familiar to anyone who has looked inside theirs. Only the
//! names below are ours; any other file in the directory is left alone and
//! not counted in its size.
//!
//! * one blob per batch, JSON Lines: one envelope per line, each ending in
//!   `\n`;
//! * named `<UTC %Y-%m-%dT%H%M%S.%f>-<8 lowercase hex>.blob`, so that
//!   sorting by name sorts by age, and age needs no file metadata;
//! * written to `<name>.tmp` first, then renamed: a reader never sees half a
//!   blob (a `.tmp` left by a crash is deleted after a minute);
//! * leased by renaming to `<name>@<UTC expiry>.lock`: a rename succeeds for
//!   one process only, so two processes sharing the directory never send
//!   the same blob twice. A lease that expires (its holder died) makes the
//!   blob available again. No lease is honoured for longer than the longest
//!   this exporter takes (`max_lease`) from when it first saw it, and one
//!   whose expiry cannot be read is expired: a skewed clock or a damaged
//!   name never keeps a blob forever;
//! * blobs are created 0600 (owner only);
//! * at most `max_bytes` in the directory (new data is refused beyond it,
//!   old data kept), blobs older than `retention` deleted and counted as
//!   soon as no lease holds them.
//!
//! Every function here but [`dir_name`] and [`default_base`] does blocking
//! file I/O: only the exporter's worker thread calls them, never an
//! application thread.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::diag::TARGET;
use crate::pipeline::Clock;
use crate::time::{parse_stamp, stamp, STAMP_LEN};

/// A `.tmp` file older than this was abandoned by a writer that died.
const ABANDONED_TMP_AFTER: Duration = Duration::from_secs(60);

/// A blob being deleted is leased this long first, so no other reader
/// takes it meanwhile.
const DELETING_LEASE: Duration = Duration::from_secs(60);

/// After the directory failed (read-only, full, not creatable), it is tried
/// again after this long.
const RETRY_BROKEN_AFTER: Duration = Duration::from_secs(30);

/// The directory is listed again at most this often.
const RELIST_AFTER: Duration = Duration::from_secs(1);

/// With nothing available or leased in it, the directory is looked at
/// again after this long (another process may have stored something).
const IDLE_LOOK_AFTER: Duration = Duration::from_secs(10);

/// The directory's size is recomputed from disk at most this often (our
/// own writes and deletes are tracked in between).
const RESCAN_SIZE_AFTER: Duration = Duration::from_secs(5);

/// What the name of a storage directory starts with.
const DIR_PREFIX: &str = "tracing-appinsights-";

/// The name of the storage directory of `ikey` at `endpoint`:
/// `tracing-appinsights-<16 lowercase hex digits>`, the 64-bit FNV-1a hash
/// of the key in lower case, a NUL byte and the endpoint. The same for every
/// version of this crate and of Rust, and it does not show the key.
pub(crate) fn dir_name(ikey: &str, endpoint: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let key = ikey.bytes().map(|b| b.to_ascii_lowercase());
    for byte in key.chain([0]).chain(endpoint.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{DIR_PREFIX}{hash:016x}")
}

/// The directory the storage directories go in without
/// `Builder::with_storage_dir`: `tracing-appinsights-uid-<effective user
/// id>` in the system's temporary directory, one per user (on Windows,
/// where the temporary directory is the user's own, `tracing-appinsights`).
pub(crate) fn default_base() -> PathBuf {
    #[cfg(unix)]
    let name = format!("{DIR_PREFIX}uid-{}", effective_uid());
    #[cfg(not(unix))]
    let name = DIR_PREFIX.trim_end_matches('-').to_owned();
    std::env::temp_dir().join(name)
}

/// The user this process acts as.
#[cfg(unix)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory of ours and
    // cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

/// Where and how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StorageConfig {
    /// Our own directory, `<base>/`[`dir_name`] (see the module docs).
    pub(crate) dir: PathBuf,
    /// Whether `dir`'s parent is ours too ([`default_base`]): then it is
    /// created and checked like `dir`. An application's directory is not.
    pub(crate) parent_is_ours: bool,
    /// The most bytes the directory may hold.
    pub(crate) max_bytes: u64,
    /// Blobs older than this are deleted unsent.
    pub(crate) retention: Duration,
    /// The longest lease this exporter takes: none it writes is longer, and
    /// none on disk is honoured for longer.
    pub(crate) max_lease: Duration,
}

/// Why a blob could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PutError {
    /// The directory holds `max_bytes` already.
    Full,
    /// The directory cannot be used (read-only, disk full, not creatable,
    /// not ours, a symbolic link, writable by others).
    Unavailable {
        /// What failed, as the system says it.
        kind: io::ErrorKind,
        /// The error, for the report.
        error: String,
    },
}

/// A leased blob, read and checked.
#[derive(Debug)]
pub(crate) struct Blob {
    /// The lease file (`<name>@<expiry>.lock`).
    lease: PathBuf,
    /// The blob's name without the lease suffix (`<name>`, ending `.blob`).
    name: String,
    /// The valid lines, each one envelope (without the `\n`).
    pub(crate) items: Vec<Vec<u8>>,
}

/// What was deleted unsent, in items (lines), since last asked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Discarded {
    /// Items in blobs older than the retention.
    pub(crate) too_old: u64,
    /// Lines that were not an envelope (a damaged blob).
    pub(crate) corrupt: u64,
    /// Items in blobs larger than the whole storage may be.
    pub(crate) oversize: u64,
}

impl Discarded {
    /// All of them.
    pub(crate) fn total(&self) -> u64 {
        self.too_old + self.corrupt + self.oversize
    }
}

/// The directory's state.
#[derive(Debug)]
enum State {
    /// Not opened yet (opening is I/O: it waits for the worker thread).
    Closed,
    /// Usable.
    Open,
    /// Failed with `error` (an [`PutError::Unavailable`]); tried again at
    /// `retry_at`.
    Broken { retry_at: Instant, error: PutError },
}

/// The offline storage of one exporter. See the module docs.
#[derive(Debug)]
pub(crate) struct Storage {
    config: StorageConfig,
    state: State,
    /// The directory's size as last computed, plus our writes since.
    bytes: u64,
    /// When `bytes` was last computed from disk.
    sized_at: Option<Instant>,
    /// Names from the last listing that may be leasable, oldest first.
    candidates: VecDeque<String>,
    /// When the directory is next worth listing: now after our own write,
    /// at the first lease's expiry, or a while after finding nothing.
    next_look: Instant,
    /// Counted data deleted unsent, not yet collected by the caller.
    discarded: Discarded,
    /// The last trouble reported at warning or error level, until a blob
    /// is written again: the same trouble again is reported at debug level.
    reported: Option<PutError>,
    /// Leases on disk that expire later than any we take, by file name,
    /// and when we first saw each: honoured for `max_lease` from then.
    far_leases: HashMap<String, Instant>,
    clock: Clock,
}

impl Storage {
    /// A storage over `config.dir`; nothing is touched until first use.
    pub(crate) fn new(config: StorageConfig, clock: Clock) -> Self {
        Storage {
            config,
            state: State::Closed,
            bytes: 0,
            sized_at: None,
            candidates: VecDeque::new(),
            next_look: clock.now(),
            discarded: Discarded::default(),
            reported: None,
            far_leases: HashMap::new(),
            clock,
        }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Whether the directory can be used now (opening it if needed).
    fn ready(&mut self) -> Result<(), PutError> {
        match &self.state {
            State::Open => return Ok(()),
            State::Broken { retry_at, error } if self.clock.now() < *retry_at => {
                return Err(error.clone())
            }
            _ => {}
        }
        match open_dir(&self.config) {
            Ok(()) => {
                self.state = State::Open;
                self.sized_at = None;
                self.next_look = self.clock.now();
                Ok(())
            }
            Err(err) => Err(self.broke(&err)),
        }
    }

    /// Marks the directory unusable for a while. Not reported here: that
    /// waits until it keeps an item out (see [`put`](Self::put)).
    fn broke(&mut self, err: &io::Error) -> PutError {
        let error = PutError::Unavailable {
            kind: err.kind(),
            error: err.to_string(),
        };
        self.state = State::Broken {
            retry_at: self.clock.now() + RETRY_BROKEN_AFTER,
            error: error.clone(),
        };
        error
    }

    /// A lease expiry no later than the longest lease we take from now.
    fn bounded(&self, until: SystemTime) -> SystemTime {
        until.min(self.clock.wall() + self.config.max_lease)
    }

    /// Writes one blob holding `items` (one envelope each). With
    /// `lease_until`, the blob is written already leased until then, so it is
    /// not read back earlier (its retry is not due).
    ///
    /// When it cannot, the trouble is reported: at warning (full) or error
    /// (unavailable) level the first time, and again whenever it changes
    /// (another error, or after a blob was written since); at debug level
    /// otherwise.
    pub(crate) fn put<'a>(
        &mut self,
        items: impl Iterator<Item = &'a [u8]> + Clone,
        lease_until: Option<SystemTime>,
    ) -> Result<(), PutError> {
        match self.write(items, lease_until) {
            Ok(()) => {
                self.reported = None;
                Ok(())
            }
            Err(error) => {
                self.report(&error);
                Err(error)
            }
        }
    }

    /// [`put`](Self::put) without the report.
    fn write<'a>(
        &mut self,
        items: impl Iterator<Item = &'a [u8]> + Clone,
        lease_until: Option<SystemTime>,
    ) -> Result<(), PutError> {
        self.ready()?;
        let size: u64 = items.clone().map(|i| i.len() as u64 + 1).sum();
        if self.bytes_now() + size > self.config.max_bytes {
            // Our count may be stale (another process deleted blobs): look
            // again before refusing.
            self.sized_at = None;
            if self.bytes_now() + size > self.config.max_bytes {
                return Err(PutError::Full);
            }
        }
        let now = self.clock.wall();
        let name = format!(
            "{}-{:08x}.blob",
            stamp(now),
            crate::record::ids::next_u64() as u32
        );
        let tmp = self.config.dir.join(format!("{name}.tmp"));
        let lease_until = lease_until.map(|until| self.bounded(until));
        let target = match lease_until {
            Some(until) if until > now => self.config.dir.join(lease_name(&name, until)),
            _ => self.config.dir.join(&name),
        };
        let written = write_new(&tmp, items).and_then(|()| fs::rename(&tmp, &target));
        if let Err(err) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.broke(&err));
        }
        self.bytes += size;
        let available = lease_until.map_or(self.clock.now(), |t| self.clock.instant_of(t));
        self.next_look = self.next_look.min(available);
        Ok(())
    }

    /// Reports why a blob could not be written (see [`put`](Self::put)).
    fn report(&mut self, error: &PutError) {
        let changed = self.reported.as_ref() != Some(error);
        self.reported = Some(error.clone());
        let dir = self.config.dir.display();
        match error {
            PutError::Full => {
                let max_bytes = self.config.max_bytes;
                let message = "Storage.Full: the offline storage is full; new telemetry that \
                               cannot be sent is dropped and counted (ExporterStats::\
                               dropped_storage_full), what is stored is kept";
                if changed {
                    tracing::warn!(target: TARGET, dir = %dir, max_bytes, "{message}");
                } else {
                    tracing::debug!(target: TARGET, dir = %dir, max_bytes, "{message}");
                }
            }
            PutError::Unavailable { error, .. } => {
                let message = "Storage.Unavailable: the offline storage directory cannot be \
                               used; telemetry that cannot be sent in time is dropped and \
                               counted (ExporterStats::dropped_storage_unavailable) until it \
                               can. Check the directory's owner, permissions and free space, \
                               or choose another with Builder::with_storage_dir";
                if changed {
                    tracing::error!(target: TARGET, dir = %dir, error = %error, "{message}");
                } else {
                    tracing::debug!(target: TARGET, dir = %dir, error = %error, "{message}");
                }
            }
        }
    }

    /// Takes the oldest available blob: leases it until `lease_until`, reads
    /// it and checks each line. Expired, over-size and unreadable blobs met
    /// on the way are deleted and counted (see [`Storage::take_discarded`]).
    pub(crate) fn take(&mut self, lease_until: SystemTime) -> Option<Blob> {
        if self.ready().is_err() {
            return None;
        }
        if self.candidates.is_empty() {
            if self.clock.now() < self.next_look {
                return None;
            }
            self.list();
        }
        let oldest_kept = self.oldest_kept();
        let lease_until = self.bounded(lease_until);
        while let Some(file) = self.candidates.pop_front() {
            let Some(Own::Blob {
                name,
                written,
                lease,
            }) = Own::parse(&file)
            else {
                continue;
            };
            if lease.is_some_and(|expiry| self.lease_end(&file, expiry).is_some()) {
                continue; // leased by someone alive
            }
            let path = self.config.dir.join(&file);
            let leased = self.config.dir.join(lease_name(name, lease_until));
            if fs::rename(&path, &leased).is_err() {
                continue; // another process took it first
            }
            if written < oldest_kept {
                self.discarded.too_old += self.delete_counting(&leased);
                continue;
            }
            match self.read(&leased) {
                Some(items) if !items.is_empty() => {
                    return Some(Blob {
                        lease: leased,
                        name: name.to_owned(),
                        items,
                    })
                }
                _ => {
                    self.remove(&leased);
                }
            }
        }
        None
    }

    /// Blobs written before this are past the retention.
    fn oldest_kept(&self) -> SystemTime {
        self.clock
            .wall()
            .checked_sub(self.config.retention)
            .unwrap_or(UNIX_EPOCH)
    }

    /// Until when the lease file `file`, expiring at `expiry` as its name
    /// says, keeps its blob: `None` when it has ended, or when `expiry`
    /// cannot be read. A lease that runs longer than any we take (a clock
    /// ahead of ours, or a damaged name) is honoured for `max_lease` from
    /// when we first saw it.
    fn lease_end(&mut self, file: &str, expiry: &str) -> Option<Instant> {
        let left = parse_stamp(expiry)?
            .duration_since(self.clock.wall())
            .ok()?;
        let now = self.clock.now();
        let end = if left > self.config.max_lease {
            *self.far_leases.entry(file.to_owned()).or_insert(now) + self.config.max_lease
        } else {
            now + left
        };
        (end > now).then_some(end)
    }

    /// Reads a leased blob's valid lines; corrupt lines are counted. `None`
    /// when it cannot be read (counted as corrupt) or is over-size.
    fn read(&mut self, path: &Path) -> Option<Vec<Vec<u8>>> {
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size > self.config.max_bytes {
            self.discarded.oversize += count_lines(path);
            return None;
        }
        let Ok(content) = fs::read(path) else {
            self.discarded.corrupt += 1;
            return None;
        };
        let mut items = Vec::new();
        for line in content.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if is_envelope(line) {
                items.push(line.to_vec());
            } else {
                self.discarded.corrupt += 1;
            }
        }
        Some(items)
    }

    /// Extends (or shortens) a lease: the blob is not read back before
    /// `until` (at most the longest lease from now). Returns `false` if the
    /// lease was lost (expired and taken by another process).
    pub(crate) fn release(&mut self, blob: &mut Blob, until: SystemTime) -> bool {
        let until = self.bounded(until);
        let next = self.config.dir.join(lease_name(&blob.name, until));
        if fs::rename(&blob.lease, &next).is_err() {
            return false;
        }
        blob.lease = next;
        self.next_look = self.next_look.min(self.clock.instant_of(until));
        true
    }

    /// Makes a blob available to any reader at once (at shutdown).
    pub(crate) fn unlease(&mut self, blob: &Blob) {
        let _ = fs::rename(&blob.lease, self.config.dir.join(&blob.name));
    }

    /// Deletes a blob that was sent (or dropped).
    pub(crate) fn delete(&mut self, blob: Blob) {
        self.remove(&blob.lease);
    }

    /// Deletes abandoned temporary files and blobs past the retention that
    /// no lease holds, and recomputes the directory's size. Cheap when
    /// there is nothing to do.
    pub(crate) fn maintain(&mut self) {
        if !matches!(self.state, State::Open) {
            return;
        }
        let now = self.clock.wall();
        let abandoned = now.checked_sub(ABANDONED_TMP_AFTER).unwrap_or(UNIX_EPOCH);
        let oldest_kept = self.oldest_kept();
        let mut total = 0;
        for (file, size) in self.own_files() {
            let path = self.config.dir.join(&file);
            match Own::parse(&file) {
                Some(Own::Tmp { written }) if written < abandoned => {
                    let _ = fs::remove_file(&path);
                    continue;
                }
                Some(Own::Blob {
                    name,
                    written,
                    lease,
                }) if written < oldest_kept => {
                    let leased = lease.is_some_and(|e| self.lease_end(&file, e).is_some());
                    if !leased {
                        // Lease it first: a reader elsewhere may be about to.
                        let until = self.bounded(now + DELETING_LEASE);
                        let mine = self.config.dir.join(lease_name(name, until));
                        if fs::rename(&path, &mine).is_ok() {
                            self.discarded.too_old += self.delete_counting(&mine);
                        }
                        continue;
                    }
                }
                _ => {}
            }
            total += size;
        }
        self.bytes = total;
        self.sized_at = Some(self.clock.now());
    }

    /// What was deleted unsent since the last call.
    pub(crate) fn take_discarded(&mut self) -> Discarded {
        std::mem::take(&mut self.discarded)
    }

    /// The directory's size, recomputed when the count is old.
    fn bytes_now(&mut self) -> u64 {
        if self
            .sized_at
            .is_none_or(|at| self.clock.now().saturating_duration_since(at) >= RESCAN_SIZE_AFTER)
        {
            self.bytes = self.own_files().iter().map(|(_, size)| size).sum();
            self.sized_at = Some(self.clock.now());
        }
        self.bytes
    }

    /// Lists the blobs available now, oldest first, as candidates for
    /// [`take`](Self::take), and decides when to look next.
    fn list(&mut self) {
        let mut names = Vec::new();
        let mut first_end: Option<Instant> = None;
        for (file, _) in self.own_files() {
            let lease_end = match Own::parse(&file) {
                Some(Own::Blob {
                    lease: Some(expiry),
                    ..
                }) => self.lease_end(&file, expiry),
                Some(Own::Blob { lease: None, .. }) => None,
                _ => continue,
            };
            match lease_end {
                Some(end) => first_end = Some(first_end.map_or(end, |first| first.min(end))),
                None => names.push(file),
            }
        }
        self.candidates = names.into(); // sorted by `own_files`
        let soonest = self.clock.now() + RELIST_AFTER;
        let latest = self.clock.now() + IDLE_LOOK_AFTER;
        self.next_look = match first_end {
            Some(end) => end.clamp(soonest, latest),
            None if self.candidates.is_empty() => latest,
            None => soonest,
        };
    }

    /// When [`take`](Self::take) may next find something: `None` while
    /// candidates are known (take them now).
    pub(crate) fn next_look(&self) -> Option<Instant> {
        match self.state {
            State::Broken { retry_at, .. } => Some(retry_at),
            _ if !self.candidates.is_empty() => None,
            _ => Some(self.next_look),
        }
    }

    /// Our own files in the directory (regular files, not symlinks, with
    /// one of our names) and their sizes, sorted by name. Far leases no
    /// longer there are forgotten.
    fn own_files(&mut self) -> Vec<(String, u64)> {
        let Ok(dir) = fs::read_dir(&self.config.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(String, u64)> = dir
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let meta = entry.metadata().ok()?; // does not follow symlinks
                let name = entry.file_name().into_string().ok()?;
                (meta.is_file() && Own::parse(&name).is_some()).then_some((name, meta.len()))
            })
            .collect();
        files.sort_unstable();
        if !self.far_leases.is_empty() {
            self.far_leases.retain(|lease, _| {
                files
                    .binary_search_by(|(name, _)| name.as_str().cmp(lease))
                    .is_ok()
            });
        }
        files
    }

    /// Deletes a file we hold, returning its line count (its items).
    fn delete_counting(&mut self, path: &Path) -> u64 {
        let lines = count_lines(path);
        self.remove(path);
        lines
    }

    fn remove(&mut self, path: &Path) {
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if fs::remove_file(path).is_ok() {
            self.bytes = self.bytes.saturating_sub(size);
        }
    }
}

/// One of our own files, as its name says.
#[derive(Debug, PartialEq, Eq)]
enum Own<'a> {
    /// A blob, `<name>` or, leased, `<name>@<expiry>.lock`: its name, when
    /// it was written, and its lease's expiry as written (perhaps not a
    /// time at all: then the lease is over).
    Blob {
        name: &'a str,
        written: SystemTime,
        lease: Option<&'a str>,
    },
    /// A blob being written, `<name>.tmp`, and when it was begun.
    Tmp { written: SystemTime },
}

impl<'a> Own<'a> {
    /// What `file` is, if one of ours: a blob's name is exactly
    /// `<stamp>-<8 lowercase hex>.blob`.
    fn parse(file: &'a str) -> Option<Own<'a>> {
        if let Some(name) = file.strip_suffix(".tmp") {
            return Some(Own::Tmp {
                written: blob_written(name)?,
            });
        }
        let (name, lease) = match file.strip_suffix(".lock") {
            Some(leased) => {
                let (name, expiry) = leased.split_once('@')?;
                (name, Some(expiry))
            }
            None => (file, None),
        };
        Some(Own::Blob {
            name,
            written: blob_written(name)?,
            lease,
        })
    }
}

/// When the blob `name` was written, if it is a blob name of ours.
fn blob_written(name: &str) -> Option<SystemTime> {
    let rest = name.strip_suffix(".blob")?;
    let hex = rest.get(STAMP_LEN..)?.strip_prefix('-')?;
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if hex.len() != 8 || !hex.bytes().all(lower_hex) {
        return None;
    }
    parse_stamp(rest.get(..STAMP_LEN)?)
}

/// Whether a line is one JSON object.
fn is_envelope(line: &[u8]) -> bool {
    let line = line.trim_ascii();
    line.first() == Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

/// The non-empty lines of a file (0 if it cannot be read).
fn count_lines(path: &Path) -> u64 {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let mut reader = io::BufReader::new(file);
    let mut count = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return count,
            Ok(_) if line.iter().all(u8::is_ascii_whitespace) => {}
            Ok(_) => count += 1,
        }
    }
}

/// The lease file name of `name` until `until`.
fn lease_name(name: &str, until: SystemTime) -> String {
    format!("{name}@{}.lock", stamp(until))
}

/// Creates our directory, and its parent when that is ours too, or checks
/// the existing ones (see [`create_own_dir`]).
fn open_dir(config: &StorageConfig) -> io::Result<()> {
    if config.parent_is_ours {
        if let Some(parent) = config.dir.parent() {
            create_own_dir(parent)?;
        }
    }
    create_own_dir(&config.dir)
}

/// Creates a directory of ours, mode 0700 (and any missing parent), or
/// checks the existing one: a real directory, not a symlink, owned by the
/// user we run as, and not writable by anyone else. A directory that exists
/// is never changed.
fn create_own_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a symbolic link",
        ));
    }
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "it is not a directory",
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if meta.uid() != effective_uid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "it belongs to user {}, not to us ({})",
                    meta.uid(),
                    effective_uid()
                ),
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "other users may write to it (mode {:o}); it is left as it is",
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// Creates `path` (it must not exist; mode 0600) holding `items`, one per
/// line.
fn write_new<'a>(path: &Path, items: impl Iterator<Item = &'a [u8]>) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = io::BufWriter::with_capacity(64 * 1024, options.open(path)?);
    for item in items {
        file.write_all(item)?;
        file.write_all(b"\n")?;
    }
    file.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
