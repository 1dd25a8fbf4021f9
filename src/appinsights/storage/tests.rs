use super::*;

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

fn storage(dir: &Path) -> Storage {
    Storage::new(
        StorageConfig {
            dir: dir.to_owned(),
            max_bytes: 1024 * 1024,
            retention: Duration::from_secs(48 * 3600),
        },
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
fn stamps_sort_by_time_and_names_parse() {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(1_764_083_207_690_091);
    assert_eq!(stamp(t), "2025-11-25T150647.690091");
    assert_eq!(parse_stamp(&stamp(t)), Some(t));
    assert_eq!(parse_stamp("2025-11-25T150647.69009x"), None);
    assert_eq!(stamp(t).len(), STAMP_LEN);
    assert!(stamp(t) < stamp(t + Duration::from_micros(1)));
    let name = "2025-11-25T150647.690091-961ecef0.blob";
    assert_eq!(parse_name(name), Some((name, None)));
    let leased = format!("{name}@2025-11-25T150747.690343.lock");
    assert_eq!(
        parse_name(&leased),
        Some((name, Some("2025-11-25T150747.690343")))
    );
    for other in [
        "x.blob.tmp",
        "a.lock",
        "a.blob@short.lock",
        ".blob",
        "note.txt",
    ] {
        assert_eq!(parse_name(other), None, "{other}");
    }
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
    s.put([A].into_iter(), Some(later(3600))).unwrap();
    assert!(files(&dir.0)[0].ends_with(".lock"));
    assert!(s.take(later(60)).is_none());
}

#[test]
fn full_storage_refuses_new_data_and_keeps_old() {
    let dir = TempDir::new("full");
    let mut s = Storage::new(
        StorageConfig {
            dir: dir.0.clone(),
            max_bytes: 30,
            retention: Duration::from_secs(3600),
        },
        Clock::System,
    );
    s.put([A].into_iter(), None).unwrap(); // 13 bytes
    s.put([B].into_iter(), None).unwrap(); // 26
    assert!(matches!(s.put([A].into_iter(), None), Err(PutError::Full)));
    assert_eq!(files(&dir.0).len(), 2);
    let first = s.take(later(60)).unwrap();
    s.delete(first);
    s.put([A].into_iter(), None).unwrap();
}

#[test]
fn expired_corrupt_and_oversize_blobs_are_deleted_and_counted() {
    let dir = TempDir::new("discard");
    let mut s = Storage::new(
        StorageConfig {
            dir: dir.0.clone(),
            max_bytes: 200,
            retention: Duration::from_secs(3600),
        },
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
    // An abandoned temporary file and a stranger's file.
    fs::write(dir.0.join(format!("{old}-00000005.blob.tmp")), b"{}").unwrap();
    fs::write(dir.0.join("README"), b"hands off").unwrap();

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
    assert_eq!(files(&dir.0), ["README"]);
}

#[test]
fn an_unusable_directory_is_reported_and_refused() {
    let dir = TempDir::new("unusable");
    fs::create_dir_all(&dir.0).unwrap();
    // A path under a regular file can never be a directory, whoever we
    // are (root ignores permission bits, not this).
    let file = dir.0.join("a-file");
    fs::write(&file, b"").unwrap();
    let mut s = storage(&file.join("storage"));
    assert!(matches!(
        s.put([A].into_iter(), None),
        Err(PutError::Unavailable)
    ));
    assert!(s.take(later(60)).is_none());
    assert!(matches!(
        s.put([A].into_iter(), None),
        Err(PutError::Unavailable)
    ));
}

#[cfg(unix)]
#[test]
fn an_open_directory_is_made_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("private");
    fs::create_dir_all(&dir.0).unwrap();
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
    let mut s = storage(&dir.0);
    s.put([A].into_iter(), None).unwrap();
    let mode = fs::metadata(&dir.0).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}
