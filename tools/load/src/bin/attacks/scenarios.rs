//! The attacks, one function each, and the storage directory they use.
//! Each returns an [`Outcome`]: what was produced, what the endpoints
//! accepted and how every application ended; `main` turns it into a row.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::app::{item_id, App, AppConfig, Ended, ID_FIELD};
use super::server::{Behaviour, Server, Tally};
use super::thousands;
use tracing_appinsights_load::Rng;

/// Items produced by one application, and at what rate (a second).
const N: u64 = 20_000;
const RATE: u64 = 20_000;
/// The applications' shutdown timeout.
const SHUTDOWN: Duration = Duration::from_secs(3);
/// How long a drain waits for storage to empty: a blob stored by a flush
/// is leased until its retry is due, at most 30 s of backoff later (that
/// of a killed process until twice its request timeout plus 5 s).
const DRAIN_WAIT: Duration = Duration::from_secs(35);

/// What a scenario did.
pub struct Outcome {
    /// What to add to the scenario's title (what it found out about its
    /// setting).
    pub note: String,
    /// Items produced, by application number.
    pub produced: BTreeMap<u64, u64>,
    /// How the scenario's applications ended (not the killed ones).
    pub ended: Vec<Ended>,
    /// The follow-up run with a healthy endpoint that sent what was left
    /// in storage, when something was.
    pub drain: Option<Ended>,
    pub tally: Arc<Tally>,
    /// Whether `docs/delivery.md` allows duplicates here (timeouts).
    pub duplicates_possible: bool,
    /// Items stored by killed applications (which report no stats).
    pub stored_by_killed: u64,
    /// Items that were in a killed application's memory, never stored.
    pub lost_with_process: u64,
    /// Lines the harness put into storage itself (garbage): read back and
    /// counted among the drops, but no produced items.
    pub planted: u64,
    /// Items of the run still on disk at the end (read from the files).
    pub on_disk_at_end: u64,
    /// The highest peak RSS of the scenario's applications (not the drain).
    pub peak_rss_mib: f64,
    /// Checks of the scenario's own that failed.
    pub failures: Vec<String>,
}

impl Outcome {
    fn new(duplicates_possible: bool) -> Self {
        Outcome {
            note: String::new(),
            produced: BTreeMap::new(),
            ended: Vec::new(),
            drain: None,
            tally: Arc::new(Tally::default()),
            duplicates_possible,
            stored_by_killed: 0,
            lost_with_process: 0,
            planted: 0,
            on_disk_at_end: 0,
            peak_rss_mib: f64::NAN,
            failures: Vec::new(),
        }
    }

    /// Counts an application that ended.
    fn ended(&mut self, ended: Ended) {
        self.produced.insert(ended.process, ended.produced);
        self.peak_rss_mib = self.peak_rss_mib.max(ended.peak_rss_mib);
        self.ended.push(ended);
    }

    /// What the scenario's applications left in storage, before any drain.
    pub fn left_before_drain(&self) -> i64 {
        let ended: i64 = self.ended.iter().map(|e| e.stats.left_in_storage()).sum();
        self.stored_by_killed as i64 + self.planted as i64 + ended
    }

    /// What is left in storage by the stats, after the drain.
    pub fn left_after_drain(&self) -> i64 {
        self.left_before_drain() + self.drain.as_ref().map_or(0, |d| d.stats.left_in_storage())
    }

    /// Whether `id` was produced in the scenario.
    pub fn was_produced(&self, id: u64) -> bool {
        self.produced
            .get(&(id >> 32))
            .is_some_and(|&n| id & 0xffff_ffff < n)
    }

    /// Makes `endpoint` healthy and sends what was left in storage
    /// (application `process`), then reads what is still on disk. The
    /// endpoint is the scenario's own: the crate keeps the data of each
    /// endpoint apart.
    fn drain_storage(
        &mut self,
        dir: &Dir,
        endpoint: &Server,
        config: impl Fn(AppConfig) -> AppConfig,
        process: u64,
    ) -> Result<(), String> {
        let left = self.left_before_drain();
        if left > 0 {
            endpoint.set_behaviour(Behaviour::Healthy);
            let storage = dir.storage();
            let mut app = App::start(config(AppConfig::new(endpoint.addr, storage, process)))?;
            let deadline = Instant::now() + DRAIN_WAIT;
            loop {
                let s = app.stats()?;
                let done = s.read_back >= left as u64 && s.in_memory == 0 && s.in_queue == 0;
                if done || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            self.drain = Some(app.shutdown(SHUTDOWN)?);
        }
        self.on_disk_at_end = scan(&dir.path, &dir.planted).lines_of(|id| self.was_produced(id));
        Ok(())
    }
}

// === the storage directory ===

/// A fresh directory under the system's temporary directory, handed to
/// `with_storage_dir` (as itself, or a directory inside a tmpfs mounted
/// on it); removed, and unmounted, on drop.
pub struct Dir {
    path: PathBuf,
    mounted: bool,
    /// Files the harness put there, with their content.
    planted: Vec<(PathBuf, Vec<u8>)>,
}

impl Dir {
    fn new(tag: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("tai-attacks-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Dir {
            path,
            mounted: false,
            planted: Vec::new(),
        }
    }

    /// The directory the applications store in.
    fn storage(&self) -> PathBuf {
        if self.mounted {
            self.path.join("store")
        } else {
            self.path.clone()
        }
    }

    /// Mounts a tmpfs of `size` on the directory (root only); the reason
    /// when it cannot.
    fn mount_tmpfs(&mut self, size: &str) -> Result<(), String> {
        std::fs::create_dir_all(&self.path).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&self.path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        self.mounted = true;
        Ok(())
    }

    /// Puts a file of the harness's own into the storage directory.
    fn plant(&mut self, name: &str, content: &[u8]) -> Result<(), String> {
        let path = self.storage().join(name);
        std::fs::write(&path, content).map_err(|e| format!("{}: {e}", path.display()))?;
        self.planted.push((path, content.to_vec()));
        Ok(())
    }

    /// The planted files that are gone or changed.
    fn planted_changed(&self) -> Vec<String> {
        self.planted
            .iter()
            .filter(|(path, content)| std::fs::read(path).ok().as_ref() != Some(content))
            .map(|(path, _)| {
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The crate's files in a storage directory ([`crate_files`]), read
/// without knowing its layout: one item a line.
#[derive(Debug, Default)]
struct OnDisk {
    /// Item ids in complete files, with how many lines hold each.
    ids: HashMap<u64, u32>,
    /// Half-written files (`.tmp`, renamed when complete): their items
    /// were never stored.
    tmp_files: u64,
    /// The complete files, sorted by path.
    files: Vec<PathBuf>,
}

impl OnDisk {
    /// Lines holding an id for which `counts` is true.
    fn lines_of(&self, counts: impl Fn(u64) -> bool) -> u64 {
        self.ids
            .iter()
            .filter(|(id, _)| counts(**id))
            .map(|(_, &n)| u64::from(n))
            .sum()
    }
}

fn scan(dir: &Path, planted: &[(PathBuf, Vec<u8>)]) -> OnDisk {
    let (files, tmp_files) = crate_files(dir, planted);
    let mut ids = HashMap::new();
    for path in &files {
        let content = std::fs::read(path).unwrap_or_default();
        for id in content.split(|b| *b == b'\n').filter_map(line_id) {
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    OnDisk {
        ids,
        tmp_files,
        files,
    }
}

/// The files under `dir`, at any depth, that the harness did not put
/// there: the complete ones, sorted, and how many are half-written
/// (`.tmp`).
fn crate_files(dir: &Path, planted: &[(PathBuf, Vec<u8>)]) -> (Vec<PathBuf>, u64) {
    let (mut files, mut tmp_files) = (Vec::new(), 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(path);
            } else if !kind.is_file() || planted.iter().any(|(p, _)| *p == path) {
                continue;
            } else if path.extension().is_some_and(|e| e == "tmp") {
                tmp_files += 1;
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    (files, tmp_files)
}

/// The item id of one stored line (an envelope), if it is one.
fn line_id(line: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    value["data"]["baseData"]["properties"][ID_FIELD]
        .as_str()?
        .parse()
        .ok()
}

/// A number in 0..n.
fn roll(n: u64) -> u64 {
    static RNG: std::sync::LazyLock<Rng> = std::sync::LazyLock::new(Rng::default);
    RNG.below(n)
}

// === the scenarios ===

/// A scenario: what it did, or why it could not run.
pub type Scenario = fn() -> Result<Outcome, String>;

/// Every scenario, in order, with its title.
pub fn all() -> Vec<(&'static str, Scenario)> {
    vec![
        ("1. endpoint accepts TCP, never answers", hang),
        ("2. endpoint answers 1 byte/s", trickle),
        ("3a. 200 with garbage bodies", garbage_200),
        ("3b. 206 with garbage bodies", garbage_206),
        ("4. 307 loop (Location: itself)", redirect_loop),
        ("5a. 401 forever", unauthorized),
        ("5b. 403 forever", forbidden),
        (
            "6. flapping endpoint, two processes on one directory",
            flapping,
        ),
        ("7. ten kill -9 while writing to storage", kills),
        (
            "8. corrupt and foreign files in the directory",
            corrupt_and_foreign,
        ),
        ("9. storage full", storage_full),
        ("10. slow healthy endpoint (200 after 500 ms)", slow),
    ]
}

/// One application producing `n` items at [`RATE`] against `behaviour`,
/// shut down with [`SHUTDOWN`]; then a drain of what it stored.
fn one_app(
    tag: &str,
    behaviour: Behaviour,
    config: fn(AppConfig) -> AppConfig,
    n: u64,
    duplicates_possible: bool,
) -> Result<Outcome, String> {
    let dir = Dir::new(tag);
    let mut outcome = Outcome::new(duplicates_possible);
    let server = Server::start(behaviour, &outcome.tally).map_err(|e| e.to_string())?;
    let mut app = App::start(config(AppConfig::new(server.addr, dir.storage(), 0)))?;
    app.produce(n, RATE)?;
    outcome.ended(app.shutdown(SHUTDOWN)?);
    outcome.drain_storage(&dir, &server, |c| c, 1)?;
    Ok(outcome)
}

/// A 1 s request timeout, so that the 2 s of production and the shutdown
/// meet several timeouts (the default is 10 s).
fn short_timeout(config: AppConfig) -> AppConfig {
    AppConfig {
        request_timeout_ms: Some(1000),
        ..config
    }
}

/// Timeouts: the service may have taken what it did not answer in time,
/// so duplicates are possible (`docs/delivery.md`, Duplicates).
fn hang() -> Result<Outcome, String> {
    let mut outcome = one_app("1", Behaviour::Hang, short_timeout, 2 * N, true)?;
    outcome.note = "request timeout 1 s".into();
    Ok(outcome)
}

fn trickle() -> Result<Outcome, String> {
    let mut outcome = one_app("2", Behaviour::Trickle, short_timeout, 2 * N, true)?;
    outcome.note = "request timeout 1 s".into();
    Ok(outcome)
}

fn defaults(config: AppConfig) -> AppConfig {
    config
}

fn garbage_200() -> Result<Outcome, String> {
    one_app("3a", Behaviour::Garbage(200), defaults, N, false)
}

fn garbage_206() -> Result<Outcome, String> {
    one_app("3b", Behaviour::Garbage(206), defaults, N, false)
}

fn redirect_loop() -> Result<Outcome, String> {
    one_app("4", Behaviour::RedirectLoop, defaults, N, false)
}

fn unauthorized() -> Result<Outcome, String> {
    one_app("5a", Behaviour::Status(401), defaults, N, false)
}

fn forbidden() -> Result<Outcome, String> {
    one_app("5b", Behaviour::Status(403), defaults, N, false)
}

/// Two applications share one directory while the endpoint flaps (with
/// 1 MiB of retry memory, so that storage is written while they produce);
/// they flush (which stores what waits, leased until its retry is due),
/// go on for 6 s (both reading back the blobs whose retry came, under
/// their leases), flush again, shut down, and a third drains what they
/// left.
fn flapping() -> Result<Outcome, String> {
    const EACH: u64 = 50_000;
    let dir = Dir::new("6");
    let mut outcome = Outcome::new(false);
    let server = Server::start(Behaviour::Flapping, &outcome.tally).map_err(|e| e.to_string())?;
    let config = |c: AppConfig| AppConfig {
        max_retry_memory: Some(1 << 20),
        ..c
    };
    let mut apps = Vec::new();
    for process in 0..2 {
        apps.push(App::start(config(AppConfig::new(
            server.addr,
            dir.storage(),
            process,
        )))?);
    }
    let all = |apps: &mut Vec<App>, command: &str, timeout: Duration| -> Result<(), String> {
        for app in apps.iter_mut() {
            app.send(command)?;
        }
        for app in apps.iter_mut() {
            app.reply(timeout)?;
        }
        Ok(())
    };
    all(
        &mut apps,
        &super::app::produce_command(EACH, EACH / 2),
        super::app::produce_time(EACH, EACH / 2),
    )?;
    all(&mut apps, "flush 3000", Duration::from_secs(15))?;
    std::thread::sleep(Duration::from_secs(6));
    // A shutdown abandons what is in flight at its deadline, and the
    // endpoint may have taken it (a duplicate `docs/delivery.md` allows);
    // a flush first leaves the shutdown nothing to abandon.
    all(&mut apps, "flush 3000", Duration::from_secs(15))?;
    for app in &mut apps {
        app.send_shutdown(SHUTDOWN)?;
    }
    for app in apps {
        outcome.ended(app.ended(SHUTDOWN)?);
    }
    let stored: u64 = outcome.ended.iter().map(|e| e.stats.stored).sum();
    let read_back: u64 = outcome.ended.iter().map(|e| e.stats.read_back).sum();
    outcome.note = format!(
        "the two stored {}, read back {}",
        thousands(stored),
        thousands(read_back)
    );
    outcome.drain_storage(&dir, &server, config, 2)?;
    Ok(outcome)
}

/// Ten applications in turn, each killed (`kill -9`) while its worker
/// writes to storage: the endpoint refuses connections and retry memory
/// is small, so storage is written while it produces; then a flush
/// stores what waits in memory, and the kill comes as soon as a file
/// being written shows (or after 1 s). Then a restart with a healthy
/// endpoint drains the directory.
fn kills() -> Result<Outcome, String> {
    const KILLS: u64 = 10;
    const CHUNK: u64 = 4_000;
    let dir = Dir::new("7");
    let mut outcome = Outcome::new(false);
    let dead = Server::dead().map_err(|e| e.to_string())?;
    // A short request timeout keeps the leases of killed processes short.
    let config = |c: AppConfig| AppConfig {
        request_timeout_ms: Some(1000),
        max_retry_memory: Some(256 * 1024),
        ..c
    };
    let mut tmp_left = 0;
    for process in 0..KILLS {
        let mut app = App::start(config(AppConfig::new(dead, dir.storage(), process)))?;
        for _ in 0..=roll(3) {
            app.produce(CHUNK, 80_000)?;
        }
        app.send("flush 200")?;
        let writing = Instant::now();
        while crate_files(&dir.path, &dir.planted).1 <= tmp_left
            && writing.elapsed() < Duration::from_secs(1)
        {
            std::hint::spin_loop();
        }
        outcome.produced.insert(process, app.produced);
        outcome.peak_rss_mib = outcome.peak_rss_mib.max(app.peak_rss_mib);
        app.kill();
        tmp_left = crate_files(&dir.path, &dir.planted).1;
    }
    let on_disk = scan(&dir.path, &dir.planted);
    let stored_once = on_disk.ids.len() as u64;
    outcome.stored_by_killed = on_disk.lines_of(|_| true);
    if outcome.stored_by_killed > stored_once {
        outcome.failures.push(format!(
            "{} items stored twice by the killed processes",
            outcome.stored_by_killed - stored_once
        ));
    }
    let produced: u64 = outcome.produced.values().sum();
    outcome.lost_with_process = produced.saturating_sub(stored_once);
    outcome.note = format!(
        "{} of the kills left a half-written .tmp",
        on_disk.tmp_files
    );
    let healthy = revive(dead, &outcome.tally)?;
    outcome.drain_storage(&dir, &healthy, config, KILLS)?;
    let undelivered = on_disk
        .ids
        .keys()
        .filter(|id| !outcome.tally.has(**id))
        .count();
    if undelivered > 0 {
        outcome.failures.push(format!(
            "{undelivered} stored items not delivered by the restart"
        ));
    }
    Ok(outcome)
}

/// The harness's own files in the directory (a `README`, a `notes.blob`
/// holding an envelope, and two named as the crate names its files: a
/// `1999-backup.tmp` and a `9999-12-31T235959.999999-0badf00d.blob`
/// holding an envelope), and garbage in the crate's files: the lines that
/// are no items are counted, the rest delivered, the harness's files left
/// byte-identical and never sent.
fn corrupt_and_foreign() -> Result<Outcome, String> {
    let mut dir = Dir::new("8");
    let mut outcome = Outcome::new(false);
    create_private(&dir.storage())?;
    dir.plant(
        "README",
        b"Operator's notes: this directory is watched. Do not delete.\n",
    )?;
    let foreign_item = format!(
        r#"{{"name":"Microsoft.ApplicationInsights.RemoteDependency","data":{{"baseType":"RemoteDependencyData","baseData":{{"id":"0000000000000001","properties":{{"{ID_FIELD}":"{}"}}}}}}}}"#,
        item_id(99, 0)
    );
    dir.plant(
        "notes.blob",
        format!("{foreign_item}\nnot telemetry\n").as_bytes(),
    )?;
    // Named as the crate names its own files, without being its own.
    dir.plant("1999-backup.tmp", b"an operator's backup\n")?;
    dir.plant(
        "9999-12-31T235959.999999-0badf00d.blob",
        format!("{foreign_item}\n").as_bytes(),
    )?;

    // Fill storage: the endpoint refuses connections, the shutdown stores.
    let dead = Server::dead().map_err(|e| e.to_string())?;
    let mut app = App::start(AppConfig::new(dead, dir.storage(), 0))?;
    app.produce(5_000, RATE)?;
    outcome.ended(app.shutdown(SHUTDOWN)?);
    let changed = dir.planted_changed();
    if !changed.is_empty() {
        outcome
            .failures
            .push(format!("{changed:?} changed by the first run"));
    }

    // Damage the crate's files.
    let on_disk = scan(&dir.path, &dir.planted);
    let [first, second, third, ..] = &on_disk.files[..] else {
        return Err(format!(
            "3 files expected in storage, found {:?}",
            on_disk.files
        ));
    };
    // Two garbage lines, a blank one (no item) and a JSON object that is
    // no envelope (sent, and refused by the endpoint) after the first
    // file's items; the second file's last item cut in half; a garbage
    // line before the third file's items.
    append(
        first,
        b"garbage, not telemetry\n\xff\xfe\x00\x01 binary\n   \n{\"foreign\":\"a JSON object, no envelope\"}\n",
    )?;
    let content = std::fs::read(second).map_err(|e| e.to_string())?;
    let body = content.strip_suffix(b"\n").unwrap_or(&content);
    let last = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    std::fs::write(second, &body[..last + (body.len() - last) / 2]).map_err(|e| e.to_string())?;
    let content = std::fs::read(third).map_err(|e| e.to_string())?;
    std::fs::write(third, [b"<<<corrupted>>>\n".as_slice(), &content].concat())
        .map_err(|e| e.to_string())?;
    let garbage = 3;
    let corrupt = garbage + 1; // and the damaged item
    outcome.planted = garbage + 1; // and the JSON object

    let healthy = revive(dead, &outcome.tally)?;
    outcome.drain_storage(&dir, &healthy, |c| c, 1)?;
    if let Some(drain) = &outcome.drain {
        if drain.stats.drop("dropped_corrupt") != corrupt {
            outcome.failures.push(format!(
                "dropped_corrupt {} where {corrupt} lines were damaged",
                drain.stats.drop("dropped_corrupt")
            ));
        }
    }
    if outcome.tally.foreign_refused() != 1 {
        outcome.failures.push(format!(
            "the JSON object that is no envelope reached the endpoint {} times",
            outcome.tally.foreign_refused()
        ));
    }
    let changed = dir.planted_changed();
    outcome.note = if changed.is_empty() {
        format!("the {} foreign files byte-identical", dir.planted.len())
    } else {
        outcome
            .failures
            .push(format!("{changed:?} changed or deleted"));
        format!("{changed:?} CHANGED")
    };
    Ok(outcome)
}

/// The endpoint refuses connections and retry memory is small, so storage
/// fills: a 2 MB tmpfs when it can be mounted (root), else a 2 MiB
/// `with_storage_max_size`. Then a drain.
fn storage_full() -> Result<Outcome, String> {
    let mut dir = Dir::new("9");
    let mut outcome = Outcome::new(false);
    let cap = match dir.mount_tmpfs("2m") {
        Ok(()) => {
            outcome.note = "a 2 MB tmpfs".into();
            None
        }
        Err(why) => {
            outcome.note = format!("with_storage_max_size 2 MiB, no tmpfs: {why}");
            Some(2 << 20)
        }
    };
    let config = |c: AppConfig| AppConfig {
        max_retry_memory: Some(512 * 1024),
        storage_max_size: cap,
        ..c
    };
    let dead = Server::dead().map_err(|e| e.to_string())?;
    let mut app = App::start(config(AppConfig::new(dead, dir.storage(), 0)))?;
    app.produce(30_000, 30_000)?;
    let ended = app.shutdown(SHUTDOWN)?;
    if ended.stats.dropped_for_storage() == 0 {
        outcome.failures.push("storage never filled".into());
    }
    outcome.ended(ended);
    let healthy = revive(dead, &outcome.tally)?;
    outcome.drain_storage(&dir, &healthy, config, 1)?;
    Ok(outcome)
}

/// Every answer a 200 after 500 ms, and ten times more spans than that
/// takes: the loss is the queue's, nothing goes to storage.
fn slow() -> Result<Outcome, String> {
    let dir = Dir::new("10");
    let mut outcome = Outcome::new(false);
    let server = Server::start(Behaviour::Slow(Duration::from_millis(500)), &outcome.tally)
        .map_err(|e| e.to_string())?;
    let mut app = App::start(AppConfig::new(server.addr, dir.storage(), 0))?;
    app.produce(200_000, 100_000)?;
    let before = app.stats()?;
    let ended = app.shutdown(Duration::from_secs(5))?;
    for (when, s) in [("before the shutdown", &before), ("after it", &ended.stats)] {
        if s.stored > 0 || s.dropped_for_storage() > 0 {
            outcome.failures.push(format!(
                "{when}: stored {}, dropped for want of storage {}",
                s.stored,
                s.dropped_for_storage()
            ));
        }
    }
    if ended.stats.dropped_queue_full == 0 {
        outcome
            .failures
            .push("no dropped_queue_full: the endpoint kept up".into());
    }
    outcome.ended(ended);
    outcome.drain_storage(&dir, &server, |c| c, 1)?;
    Ok(outcome)
}

/// A healthy endpoint where the [`Server::dead`] one `addr` was.
fn revive(addr: std::net::SocketAddr, tally: &Arc<Tally>) -> Result<Server, String> {
    Server::start_at(addr, Behaviour::Healthy, tally).map_err(|e| format!("{addr}: {e}"))
}

/// Creates `dir` private to the user (0700), as the crate wants it.
fn create_private(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn append(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}
