//! Offline storage: telemetry that cannot be delivered now, kept on disk
//! and sent later, by this process or the next one.
//!
//! The format is that of the Python exporters' `LocalFileStorage`
//! (`opencensus-ext-azure` and `azure-monitor-opentelemetry-exporter`), so
//! the layout is familiar to anyone who has looked inside theirs:
//!
//! * one blob per batch, JSON Lines: one envelope per line, each ending in
//!   `\n`;
//! * named `<UTC %Y-%m-%dT%H%M%S.%f>-<8 hex>.blob`, so that sorting by name
//!   sorts by age, and age needs no file metadata;
//! * written to `<name>.tmp` first, then renamed: a reader never sees half a
//!   blob (a `.tmp` left by a crash is deleted after a minute);
//! * leased by renaming to `<name>@<UTC expiry>.lock`: a rename succeeds for
//!   one process only, so two processes sharing the directory never send
//!   the same blob twice. A lease that expires (its holder died) makes the
//!   blob available again;
//! * the directory is created mode 0700 and blobs 0600 (owner only), and a
//!   directory owned by another user is refused;
//! * at most `max_bytes` in the directory (new data is refused beyond it,
//!   old data kept), blobs older than `retention` deleted and counted.
//!
//! Every function here does blocking file I/O: only the exporter's worker
//! thread calls them, never an application thread.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::diag::{self, TARGET};
use crate::pipeline::Clock;
use crate::time::{parse_stamp, stamp, STAMP_LEN};

/// A `.tmp` file older than this was abandoned by a writer that died.
const ABANDONED_TMP_AFTER: Duration = Duration::from_secs(60);

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

/// Where and how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StorageConfig {
    /// The directory (created if missing, mode 0700).
    pub(crate) dir: PathBuf,
    /// The most bytes the directory may hold.
    pub(crate) max_bytes: u64,
    /// Blobs older than this are deleted unsent.
    pub(crate) retention: Duration,
}

/// Why a blob could not be written.
#[derive(Debug)]
pub(crate) enum PutError {
    /// The directory holds `max_bytes` already.
    Full,
    /// The directory cannot be used (read-only, disk full, not creatable,
    /// owned by someone else); reported once, when it happened.
    Unavailable,
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
    /// Lines that were not an envelope (a damaged or foreign blob).
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
    /// Failed; tried again at `retry_at`.
    Broken { retry_at: Instant },
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
    warned_full: diag::Once,
    warned_unavailable: diag::Once,
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
            warned_full: diag::Once::default(),
            warned_unavailable: diag::Once::default(),
            clock,
        }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Whether the directory can be used now (opening it if needed).
    fn ready(&mut self) -> Result<(), PutError> {
        match self.state {
            State::Open => return Ok(()),
            State::Broken { retry_at } if self.clock.now() < retry_at => {
                return Err(PutError::Unavailable)
            }
            _ => {}
        }
        match open_dir(&self.config.dir) {
            Ok(()) => {
                self.state = State::Open;
                self.sized_at = None;
                self.next_look = self.clock.now();
                Ok(())
            }
            Err(err) => Err(self.broke(&err)),
        }
    }

    /// Marks the directory unusable for a while and reports it once.
    fn broke(&mut self, err: &io::Error) -> PutError {
        self.state = State::Broken {
            retry_at: self.clock.now() + RETRY_BROKEN_AFTER,
        };
        if self.warned_unavailable.first() {
            tracing::error!(
                target: TARGET,
                dir = %self.config.dir.display(),
                error = %err,
                "Storage.Unavailable: the offline storage directory cannot be used; telemetry \
                 that cannot be sent now is dropped and counted (ExporterStats::\
                 dropped_storage_full) until it can. Check its permissions and free space, or \
                 choose another with Builder::with_storage_dir"
            );
        }
        PutError::Unavailable
    }

    /// Writes one blob holding `items` (one envelope each). With
    /// `lease_until`, the blob is written already leased until then, so it is
    /// not read back earlier (its retry is not due).
    pub(crate) fn put<'a>(
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
                if self.warned_full.first() {
                    tracing::warn!(
                        target: TARGET,
                        dir = %self.config.dir.display(),
                        max_bytes = self.config.max_bytes,
                        "Storage.Full: the offline storage is full; new telemetry that cannot \
                         be sent is dropped and counted (ExporterStats::dropped_storage_full), \
                         what is stored is kept"
                    );
                }
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
        let now = self.clock.wall();
        let now_stamp = stamp(now);
        let oldest_kept = stamp(now.checked_sub(self.config.retention).unwrap_or(now));
        while let Some(file) = self.candidates.pop_front() {
            let Some((name, lease)) = parse_name(&file) else {
                continue;
            };
            if lease.is_some_and(|expiry| expiry > now_stamp.as_str()) {
                continue; // leased by someone alive
            }
            let path = self.config.dir.join(&file);
            let leased = self.config.dir.join(lease_name(name, lease_until));
            if fs::rename(&path, &leased).is_err() {
                continue; // another process took it first
            }
            let name = name.to_owned();
            if name.as_str() < oldest_kept.as_str() {
                self.discarded.too_old += self.delete_counting(&leased);
                continue;
            }
            match self.read(&leased) {
                Some(items) if !items.is_empty() => {
                    return Some(Blob {
                        lease: leased,
                        name,
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
    /// `until`. Returns `false` if the lease was lost (expired and taken by
    /// another process).
    pub(crate) fn release(&mut self, blob: &mut Blob, until: SystemTime) -> bool {
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

    /// Deletes abandoned temporary files and expired blobs, and recomputes
    /// the directory's size. Cheap when there is nothing to do.
    pub(crate) fn maintain(&mut self) {
        if !matches!(self.state, State::Open) {
            return;
        }
        let now = self.clock.wall();
        let abandoned = stamp(now.checked_sub(ABANDONED_TMP_AFTER).unwrap_or(now));
        let oldest_kept = stamp(now.checked_sub(self.config.retention).unwrap_or(now));
        let now_stamp = stamp(now);
        let mut total = 0;
        for (file, size) in self.entries() {
            let path = self.config.dir.join(&file);
            if file.ends_with(".tmp") {
                if file.as_str() < abandoned.as_str() {
                    let _ = fs::remove_file(&path);
                    continue;
                }
            } else if let Some((name, lease)) = parse_name(&file) {
                let expired = name < oldest_kept.as_str();
                let leased = lease.is_some_and(|e| e > now_stamp.as_str());
                if expired && !leased {
                    // Lease it first: a reader elsewhere may be about to.
                    let mine = self.config.dir.join(format!("{name}@{now_stamp}.del.tmp"));
                    if fs::rename(&path, &mine).is_ok() {
                        self.discarded.too_old += self.delete_counting(&mine);
                    }
                    continue;
                }
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
            self.bytes = self.entries().iter().map(|(_, size)| size).sum();
            self.sized_at = Some(self.clock.now());
        }
        self.bytes
    }

    /// Lists the blobs available now, oldest first, as candidates for
    /// [`take`](Self::take), and decides when to look next.
    fn list(&mut self) {
        let now = self.clock.wall();
        let now_stamp = stamp(now);
        let mut names = Vec::new();
        let mut first_expiry: Option<String> = None;
        for (file, _) in self.entries() {
            match parse_name(&file) {
                Some((_, Some(expiry))) if expiry > now_stamp.as_str() => {
                    first_expiry = Some(match first_expiry {
                        Some(first) if first.as_str() <= expiry => first,
                        _ => expiry.to_owned(),
                    });
                }
                Some(_) => names.push(file),
                None => {}
            }
        }
        names.sort_unstable();
        self.candidates = names.into();
        let soonest = self.clock.now() + RELIST_AFTER;
        let latest = self.clock.now() + IDLE_LOOK_AFTER;
        self.next_look = match first_expiry.and_then(|e| parse_stamp(&e)) {
            Some(expiry) => self.clock.instant_of(expiry).clamp(soonest, latest),
            None if self.candidates.is_empty() => latest,
            None => soonest,
        };
    }

    /// When [`take`](Self::take) may next find something: `None` while
    /// candidates are known (take them now).
    pub(crate) fn next_look(&self) -> Option<Instant> {
        match self.state {
            State::Broken { retry_at } => Some(retry_at),
            _ if !self.candidates.is_empty() => None,
            _ => Some(self.next_look),
        }
    }

    /// The regular files in the directory (not symlinks) and their sizes.
    fn entries(&mut self) -> Vec<(String, u64)> {
        let Ok(dir) = fs::read_dir(&self.config.dir) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|entry| {
                let meta = entry.metadata().ok()?; // does not follow symlinks
                let name = entry.file_name().into_string().ok()?;
                meta.is_file().then_some((name, meta.len()))
            })
            .collect()
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

/// `<name>` and the lease expiry stamp of a blob's file name, if it is one:
/// `<stamp>-<hex>.blob` or `<stamp>-<hex>.blob@<stamp>.lock`.
fn parse_name(file: &str) -> Option<(&str, Option<&str>)> {
    if let Some(name) = file.strip_suffix(".blob") {
        return (name.len() > STAMP_LEN).then_some((file, None));
    }
    let leased = file.strip_suffix(".lock")?;
    let (name, expiry) = leased.split_once('@')?;
    (name.ends_with(".blob") && expiry.len() == STAMP_LEN).then_some((name, Some(expiry)))
}

/// The lease file name of `name` until `until`.
fn lease_name(name: &str, until: SystemTime) -> String {
    format!("{name}@{}.lock", stamp(until))
}

/// Creates the directory (mode 0700) or checks the existing one: a real
/// directory, not a symlink, private to us.
fn open_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a directory (or a symlink)",
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        // A file we create is ours: the directory must be ours too, or
        // someone else could read what we store there.
        let probe = dir.join(format!(
            "{}-{:08x}.probe.tmp",
            stamp(SystemTime::now()),
            crate::record::ids::next_u64() as u32
        ));
        write_new(&probe, std::iter::empty())?;
        let mine = fs::metadata(&probe).map(|m| m.uid());
        let _ = fs::remove_file(&probe);
        if mine? != meta.uid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the directory belongs to another user",
            ));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
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
