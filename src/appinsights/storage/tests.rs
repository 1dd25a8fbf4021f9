use super::*;
use crate::pipeline::ManualClock;
use std::sync::{Arc, Mutex};

/// A fresh directory under the system's temporary directory, removed on
/// drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tai-storage-{tag}-{}-{:x}",
            std::process::id(),
            crate::record::ids::next_u64()
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The settings of a storage in `dir` (an application's directory of our
/// own) with the default lease bound of five minutes.
pub(crate) fn config(dir: &Path, max_bytes: u64, retention: Duration) -> StorageConfig {
    StorageConfig {
        dir: dir.to_owned(),
        parent_is_ours: false,
        max_bytes,
        retention,
        max_lease: MAX_LEASE,
    }
}

const MAX_LEASE: Duration = Duration::from_secs(300);

fn storage(dir: &Path) -> Storage {
    Storage::new(
        config(dir, 1024 * 1024, Duration::from_secs(48 * 3600)),
        Clock::System,
    )
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

const A: &[u8] = br#"{"name":"a"}"#;
const B: &[u8] = br#"{"name":"b"}"#;

fn later(secs: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(secs)
}

#[test]
fn stamps_sort_by_time_and_only_our_names_parse() {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(1_764_083_207_690_091);
    assert_eq!(stamp(t), "2025-11-25T150647.690091");
    assert_eq!(parse_stamp(&stamp(t)), Some(t));
    assert_eq!(parse_stamp("2025-11-25T150647.69009x"), None);
    assert_eq!(stamp(t).len(), STAMP_LEN);
    assert!(stamp(t) < stamp(t + Duration::from_micros(1)));
    let name = "2025-11-25T150647.690091-961ecef0.blob";
    let blob = |lease| {
        Some(Own::Blob {
            name,
            written: t,
            lease,
        })
    };
    assert_eq!(Own::parse(name), blob(None));
    let leased = format!("{name}@2025-11-25T150747.690343.lock");
    assert_eq!(Own::parse(&leased), blob(Some("2025-11-25T150747.690343")));
    // A damaged expiry is still our lease (it ends at once, see below).
    let damaged = format!("{name}@zzzzzzzzzzzzzzzzzzzzzzzz.lock");
    assert_eq!(Own::parse(&damaged), blob(Some("zzzzzzzzzzzzzzzzzzzzzzzz")));
    assert_eq!(
        Own::parse(&format!("{name}.tmp")),
        Some(Own::Tmp { written: t })
    );
    for other in [
        "x.blob.tmp",
        "a.lock",
        "a.blob@2025-11-25T150747.690343.lock",
        ".blob",
        "note.txt",
        "README",
        "2019-07-01-db-dump.tmp",
        "project-notes-archive-2024.blob",
        "backup-of-important-data-v2.blob",
        "2025-11-25T150647.690091-961ECEF0.blob",
        "2025-11-25T150647.690091-961ecef.blob",
        "2025-11-25T150647.690091-961ecef00.blob",
        "2025-11-25T150647.690091_961ecef0.blob",
        "2025-13-25T150647.690091-961ecef0.blob",
        "2025-11-25T150647.690091-961ecef0.blob.lock",
        "2025-11-25T150647.690091-961ecef0.blob@x.lock.tmp",
        "2025-11-25T150647.690091-961ecef0.blob.bak",
        "é",
    ] {
        assert_eq!(Own::parse(other), None, "{other}");
    }
}

/// The directory's name is a stable hash of the key (in any case) and the
/// endpoint, and shows neither.
#[test]
fn directory_names_are_a_stable_hash_of_key_and_endpoint() {
    let key = "0a1b2c3d-0000-0000-0000-000000000000";
    let endpoint = "https://westeurope-5.in.applicationinsights.azure.com";
    // FNV-1a 64 of `key NUL endpoint`, computed independently.
    assert_eq!(
        dir_name(key, endpoint),
        "tracing-appinsights-f50d9c0a840f662b"
    );
    assert_eq!(
        dir_name(&key.to_uppercase(), endpoint),
        dir_name(key, endpoint)
    );
    assert_ne!(
        dir_name(key, "https://dc.services.visualstudio.com"),
        dir_name(key, endpoint)
    );
    assert_ne!(
        dir_name("0a1b2c3d-0000-0000-0000-000000000001", endpoint),
        dir_name(key, endpoint)
    );
    assert!(!dir_name(key, endpoint).contains("0a1b2c3d"));
    let base = default_base();
    assert!(base.starts_with(std::env::temp_dir()), "{base:?}");
    #[cfg(unix)]
    assert_eq!(
        base.file_name().unwrap().to_str().unwrap(),
        format!("tracing-appinsights-uid-{}", effective_uid())
    );
}

#[test]
fn put_then_take_then_delete() {
    let dir = TempDir::new("roundtrip");
    let mut s = storage(&dir.0);
    s.put([A, B].into_iter(), None).unwrap();
    let listed = files(&dir.0);
    assert_eq!(listed.len(), 1);
    assert!(listed[0].ends_with(".blob"), "{listed:?}");
    assert_eq!(
        fs::read(dir.0.join(&listed[0])).unwrap(),
        b"{\"name\":\"a\"}\n{\"name\":\"b\"}\n"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.0), 0o700);
        assert_eq!(mode(&dir.0.join(&listed[0])), 0o600);
    }
    let blob = s.take(later(60)).expect("a blob");
    assert_eq!(blob.items, [A.to_vec(), B.to_vec()]);
    assert!(files(&dir.0)[0].ends_with(".lock"));
    // Leased: not taken again, even after relisting.
    s.next_look = Instant::now();
    assert!(s.take(later(60)).is_none());
    s.delete(blob);
    assert!(files(&dir.0).is_empty());
    assert_eq!(s.take_discarded(), Discarded::default());
}

#[test]
fn a_lease_keeps_other_readers_out_until_it_expires() {
    let dir = TempDir::new("lease");
    let mut one = storage(&dir.0);
    let mut two = storage(&dir.0);
    one.put([A].into_iter(), None).unwrap();
    let mut blob = one.take(later(60)).unwrap();
    assert!(two.take(later(60)).is_none());
    // Expired lease (its holder died): another reader takes it, and the
    // first holder learns it lost it.
    assert!(one.release(&mut blob, SystemTime::now() - Duration::from_secs(1)));
    two.next_look = Instant::now();
    let taken = two.take(later(60)).expect("expired lease is free");
    assert!(!one.release(&mut blob, later(60)));
    two.delete(taken);
    assert!(files(&dir.0).is_empty());
}

#[test]
fn written_with_a_lease_it_waits_for_it() {
    let dir = TempDir::new("written-leased");
    let mut s = storage(&dir.0);
    s.put([A].into_iter(), Some(later(200))).unwrap();
    assert!(files(&dir.0)[0].ends_with(".lock"));
    assert!(s.take(later(60)).is_none());
}

/// The leases we write, whatever we ask for, end within the longest lease
/// we take: no blob of ours is kept from other readers for longer.
#[test]
fn our_leases_are_never_longer_than_the_maximum() {
    let dir = TempDir::new("lease-bound");
    let mut s = storage(&dir.0);
    let asked = later(3600);
    s.put([A].into_iter(), Some(asked)).unwrap();
    s.put([B].into_iter(), None).unwrap();
    s.next_look = Instant::now();
    let mut blob = s.take(asked).unwrap();
    assert!(s.release(&mut blob, asked));
    let bound = stamp(later(MAX_LEASE.as_secs() + 1));
    let expiries: Vec<String> = files(&dir.0)
        .iter()
        .map(|f| match Own::parse(f) {
            Some(Own::Blob {
                lease: Some(expiry),
                ..
            }) => expiry.to_owned(),
            other => panic!("{f} should be leased: {other:?}"),
        })
        .collect();
    assert_eq!(expiries.len(), 2);
    assert!(
        expiries.iter().all(|e| e.as_str() < bound.as_str()),
        "{expiries:?} end within {MAX_LEASE:?}"
    );
}

#[test]
fn full_storage_refuses_new_data_and_keeps_old() {
    let dir = TempDir::new("full");
    let mut s = Storage::new(config(&dir.0, 30, Duration::from_secs(3600)), Clock::System);
    s.put([A].into_iter(), None).unwrap(); // 13 bytes
    s.put([B].into_iter(), None).unwrap(); // 26
    assert_eq!(s.put([A].into_iter(), None), Err(PutError::Full));
    assert_eq!(files(&dir.0).len(), 2);
    let first = s.take(later(60)).unwrap();
    s.delete(first);
    s.put([A].into_iter(), None).unwrap();
}

#[test]
fn expired_corrupt_and_oversize_blobs_are_deleted_and_counted_other_files_left_alone() {
    let dir = TempDir::new("discard");
    let mut s = Storage::new(
        config(&dir.0, 200, Duration::from_secs(3600)),
        Clock::System,
    );
    s.put([A].into_iter(), None).unwrap();
    let old = stamp(SystemTime::now() - Duration::from_secs(7200));
    fs::write(dir.0.join(format!("{old}-00000001.blob")), b"{}\n{}\n{}\n").unwrap();
    fs::write(
        dir.0.join(format!("{old}-00000002.blob")),
        "{\"x\":1}\nnot json\n{\"y\":\n",
    )
    .unwrap();
    let mut big = Vec::new();
    for _ in 0..30 {
        big.extend_from_slice(b"{\"z\":1}\n");
    }
    let now = stamp(SystemTime::now());
    fs::write(dir.0.join(format!("{now}-00000003.blob")), &big).unwrap();
    fs::write(
        dir.0.join(format!("{now}-00000004.blob")),
        b"\xff\xfe garbage",
    )
    .unwrap();
    // An abandoned temporary file of ours, and files that are not ours
    // (however much they look like telemetry, and larger than the whole
    // storage may be: not counted in its size).
    fs::write(dir.0.join(format!("{old}-00000005.blob.tmp")), b"{}").unwrap();
    let strangers: [(&str, &[u8]); 4] = [
        ("README", b"hands off"),
        ("notes.blob", b"{\"my\":\"notes\"}\n"),
        ("2019-07-01-db-dump.tmp", &[b'x'; 1000]),
        ("2000-01-01T000000.000000-0000000X.blob", b"{}\n"),
    ];
    for (name, content) in strangers {
        fs::write(dir.0.join(name), content).unwrap();
    }

    let mut taken = Vec::new();
    s.next_look = Instant::now();
    while let Some(blob) = s.take(later(60)) {
        taken.push(blob.items.clone());
        s.delete(blob);
    }
    s.maintain();
    assert_eq!(taken, [vec![A.to_vec()]]);
    assert_eq!(
        s.take_discarded(),
        Discarded {
            too_old: 6,
            corrupt: 1,
            oversize: 30
        }
    );
    let mut left: Vec<&str> = strangers.iter().map(|(name, _)| *name).collect();
    left.sort();
    assert_eq!(files(&dir.0), left);
    for (name, content) in strangers {
        assert_eq!(fs::read(dir.0.join(name)).unwrap(), content, "{name}");
    }
    // Only our files count: there is room.
    s.put([A].into_iter(), None).unwrap();
}

#[test]
fn an_unusable_directory_is_refused() {
    let dir = TempDir::new("unusable");
    fs::create_dir_all(&dir.0).unwrap();
    // A path under a regular file can never be a directory, whoever we
    // are (root ignores permission bits, not this).
    let file = dir.0.join("a-file");
    fs::write(&file, b"").unwrap();
    let mut s = storage(&file.join("storage"));
    assert!(matches!(
        s.put([A].into_iter(), None),
        Err(PutError::Unavailable { .. })
    ));
    assert!(s.take(later(60)).is_none());
    assert!(matches!(
        s.put([A].into_iter(), None),
        Err(PutError::Unavailable { .. })
    ));
}

/// A directory of ours that others may write to, or that is a symbolic
/// link, is refused, and left as it is.
#[cfg(unix)]
#[test]
fn a_directory_others_may_write_to_or_a_symlink_is_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("not-private");
    let ours = dir.0.join("ours");
    fs::create_dir_all(&ours).unwrap();
    fs::set_permissions(&ours, fs::Permissions::from_mode(0o777)).unwrap();
    let mut s = storage(&ours);
    assert!(matches!(
        s.put([A].into_iter(), None),
        Err(PutError::Unavailable {
            kind: io::ErrorKind::PermissionDenied,
            ..
        })
    ));
    assert_eq!(
        fs::metadata(&ours).unwrap().permissions().mode() & 0o7777,
        0o777
    );
    assert!(files(&ours).is_empty());

    let target = dir.0.join("elsewhere");
    fs::create_dir_all(&target).unwrap();
    let link = dir.0.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut s = storage(&link);
    assert!(matches!(
        s.put([A].into_iter(), None),
        Err(PutError::Unavailable { .. })
    ));
    assert!(files(&target).is_empty());

    // The per-user default base is ours too: checked the same way.
    let base = dir.0.join("base");
    fs::create_dir_all(&base).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o1777)).unwrap();
    let mut s = Storage::new(
        StorageConfig {
            parent_is_ours: true,
            ..config(&base.join("sub"), 1024, Duration::from_secs(60))
        },
        Clock::System,
    );
    assert!(matches!(
        s.put([A].into_iter(), None),
        Err(PutError::Unavailable { .. })
    ));
    assert_eq!(
        fs::metadata(&base).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    assert!(files(&base).is_empty());
}

/// This crate's events on the current thread, as (level, text of all
/// fields).
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0 += &format!(" {}={value:?}", field.name());
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), text.0));
    }
}

impl Events {
    /// The levels of the events whose text contains `what`, in order.
    fn levels(&self, what: &str) -> Vec<tracing::Level> {
        let events = self.0.lock().unwrap();
        let found = events.iter().filter(|(_, text)| text.contains(what));
        found.map(|(level, _)| *level).collect()
    }
}

/// Trouble is reported when it keeps a blob out, at error level when it
/// is new (the first, a different one, or again after a blob was written),
/// at debug level when it goes on.
#[cfg(unix)]
#[test]
fn a_storage_problem_is_reported_when_it_affects_items_and_again_when_it_changes() {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt as _;
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    let dir = TempDir::new("reported");
    fs::create_dir_all(&dir.0).unwrap();
    let parent = dir.0.join("parent");
    fs::write(&parent, b"").unwrap();
    let ours = parent.join("ours");
    let clock = ManualClock::new();
    let mut s = Storage::new(
        config(&ours, 1024, Duration::from_secs(3600)),
        Clock::Manual(clock.clone()),
    );
    // Reading back meets the trouble first: nothing is kept out yet.
    assert!(s.take(clock_later(&clock, 60)).is_none());
    assert!(events.levels("Storage.Unavailable").is_empty());
    let put = |s: &mut Storage| s.put([A].into_iter(), None);
    assert!(put(&mut s).is_err());
    assert!(put(&mut s).is_err());
    assert_eq!(
        events.levels("Storage.Unavailable"),
        [Level::ERROR, Level::DEBUG]
    );
    // Another trouble: our directory is a symbolic link.
    fs::remove_file(&parent).unwrap();
    fs::create_dir(&parent).unwrap();
    std::os::unix::fs::symlink(&dir.0, &ours).unwrap();
    clock.advance(RETRY_BROKEN_AFTER);
    assert!(put(&mut s).is_err());
    let levels = events.levels("Storage.Unavailable");
    assert_eq!(levels, [Level::ERROR, Level::DEBUG, Level::ERROR]);
    assert_eq!(events.levels("symbolic link"), [Level::ERROR]);
    // It works again, then breaks the first way again: reported again.
    fs::remove_file(&ours).unwrap();
    clock.advance(RETRY_BROKEN_AFTER);
    put(&mut s).unwrap();
    fs::remove_dir_all(&ours).unwrap();
    fs::write(&ours, b"").unwrap();
    assert!(put(&mut s).is_err());
    assert!(put(&mut s).is_err());
    let levels = events.levels("Storage.Unavailable");
    assert_eq!(levels[3..], [Level::ERROR, Level::DEBUG]);
    assert!(events
        .0
        .lock()
        .unwrap()
        .iter()
        .all(|(_, text)| text.contains(&ours.display().to_string())));
}

fn clock_later(clock: &ManualClock, secs: u64) -> SystemTime {
    Clock::Manual(clock.clone()).wall() + Duration::from_secs(secs)
}
