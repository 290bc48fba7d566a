//! The store's tests: layout and modes, the daemon lock, corrupt and unwritable files, keys.

use std::os::unix::fs::MetadataExt;

use aloha::lockout::Attempts;
use aloha::protocol::BackendKind;

use super::attempts::AttemptsFile;
use super::files::{UserRecord, create_exclusive, read_json, read_optional, read_user_record};
use super::history::HistoryFile;
use super::*;
use crate::backend::{KdfParams, KeyBlob, SALT_LEN};

fn temp() -> PathBuf {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    std::env::temp_dir().join(format!("aloha-store-{}", aloha::hex::encode(&b)))
}

fn container(user: &str) -> Container {
    Container {
        version: CONTAINER_VERSION,
        user: user.into(),
        uid: 1000,
        backend: BackendKind::Software,
        created_at: 1,
        pin_set_at: 1,
        public_key: vec![4; 65],
        pin_salt: [1; SALT_LEN],
        protectors: Protectors {
            pin: KeyBlob::Software {
                kdf: KdfParams {
                    memory_kib: 8,
                    passes: 1,
                    lanes: 1,
                },
                salt: vec![0; 16],
                nonce: vec![0; 24],
                ciphertext: vec![0; 48],
            },
        },
    }
}

#[test]
fn layout_modes_and_round_trips() {
    let dir = temp();
    let store = Store::open(&dir).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(mode(&dir.join("private")), 0o700);
    assert_eq!(mode(&dir.join("public")), 0o755);
    assert_eq!(store.load_container("alice").unwrap(), None);
    store.save_container(&container("alice")).unwrap();
    assert_eq!(
        store.load_container("alice").unwrap(),
        Some(container("alice"))
    );
    assert_eq!(mode(&store.container_path("alice")), 0o600);
    assert_eq!(mode(&store.user_dir("alice")), 0o700);
    let a = Attempts {
        failures: 3,
        last_failure: 99,
    };
    store.save_attempts("alice", &a).unwrap();
    assert_eq!(store.load_attempts("alice").unwrap(), a);
    store
        .publish_key(&container("alice").registered_key())
        .unwrap();
    assert_eq!(mode(&registry::key_path(&dir, "alice")), 0o644);
    assert!(store.remove_user("alice").unwrap());
    assert!(!store.remove_user("alice").unwrap());
    assert_eq!(store.load_container("alice").unwrap(), None);
    // No temp files are left behind.
    let leftovers: Vec<_> = fs::read_dir(dir.join("private/users")).unwrap().collect();
    assert!(leftovers.is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_daemon_per_state_dir() {
    let dir = temp();
    let first = Store::open(&dir).unwrap();
    assert!(matches!(Store::open(&dir), Err(StoreError::InUse(_))));
    drop(first);
    assert!(Store::open(&dir).is_ok());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_files_are_reported_with_their_path_and_left_untouched() {
    let dir = temp();
    let store = Store::open(&dir).unwrap();
    store.save_container(&container("bob")).unwrap();
    let good = fs::read(store.container_path("bob")).unwrap();
    for damaged in [
        &good[..good.len() / 2],
        b"",
        b"\x00\x01garbage",
        b"{\"version\":1}",
    ] {
        fs::write(store.container_path("bob"), damaged).unwrap();
        let err = store.load_container("bob").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&store.container_path("bob").display().to_string())
        );
        assert_eq!(
            fs::read(store.container_path("bob")).unwrap(),
            damaged,
            "must not be rewritten"
        );
    }
    fs::write(store.attempts_path("bob"), b"{\"version\":1,\"failures\":").unwrap();
    assert!(matches!(
        store.load_attempts("bob"),
        Err(StoreError::Corrupt { .. })
    ));
    // A container filed under the wrong name is refused.
    store.save_container(&container("carol")).unwrap();
    fs::copy(store.container_path("carol"), store.container_path("bob")).unwrap();
    assert!(matches!(
        store.load_container("bob"),
        Err(StoreError::Corrupt { .. })
    ));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_writes_leave_no_temp_file_and_reads_tell_missing_from_unreadable() {
    let dir = temp();
    fs::create_dir_all(dir.join("busy/inside")).unwrap();
    let leftovers = || {
        fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count()
    };
    // rename(2) cannot replace a non-empty directory.
    let e = write_atomic(&dir.join("busy"), b"x", 0o600).unwrap_err();
    assert!(matches!(e, StoreError::Write { .. }), "{e}");
    assert_eq!(leftovers(), 0);
    write_atomic(&dir.join("f"), b"old", 0o600).unwrap();
    create_exclusive(&dir.join("f"), b"new", 0o600).unwrap();
    assert_eq!(
        fs::read(dir.join("f")).unwrap(),
        b"old",
        "the first one stays"
    );
    assert_eq!(leftovers(), 0);
    assert!(read_optional(&dir.join("nothing")).unwrap().is_none());
    assert!(matches!(
        read_optional(&dir.join("busy")),
        Err(StoreError::Read { .. })
    ));
    assert!(matches!(
        read_json::<AttemptsFile>(&dir.join("busy")),
        Err(StoreError::Read { .. })
    ));
    assert!(
        read_json::<AttemptsFile>(&dir.join("nothing"))
            .unwrap()
            .is_none()
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn history_key_is_stable() {
    let dir = temp();
    let store = Store::open(&dir).unwrap();
    let k1 = store.history_key(true).unwrap();
    let k2 = store.history_key(true).unwrap();
    assert_eq!(*k1, *k2);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_first_uses_agree_on_one_history_key() {
    let dir = temp();
    let store = std::sync::Arc::new(Store::open(&dir).unwrap());
    let keys: Vec<Vec<u8>> = (0..16)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || store.history_key(true).unwrap().to_vec())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "every thread got the same key"
    );
    assert_eq!(*store.history_key(true).unwrap(), keys[0]);
    let leftovers: Vec<_> = fs::read_dir(dir.join("private"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The TPM key file follows the same rule: the first blob stored wins.
    let blob = |n: u8| KeyBlob::Tpm {
        public: vec![0, 1, n],
        private: vec![0, 1, n],
    };
    let first = store
        .tpm_history_key(true, || Ok::<_, ()>(blob(1)))
        .unwrap()
        .unwrap();
    let second = store
        .tpm_history_key(true, || Ok::<_, ()>(blob(2)))
        .unwrap()
        .unwrap();
    assert_eq!(first, blob(1));
    assert_eq!(second, blob(1));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn debug_output_shows_no_digest_and_no_salt() {
    let h = History {
        key: BackendKind::Software,
        salt: [0xab; HISTORY_SALT_LEN],
        digests: vec!["5ec7e7d16e57".into()],
    };
    let file = HistoryFile {
        version: 2,
        key: Some(h.key),
        salt: h.salt.to_vec(),
        digests: h.digests.clone(),
    };
    for shown in [
        format!("{h:?}"),
        format!("{:?}", StoredHistory::Current(h.clone())),
        format!("{:?}", StoredHistory::Legacy(h.digests.clone())),
        format!("{file:?}"),
    ] {
        assert!(!shown.contains("5ec7e7d16e57"), "{shown}");
        assert!(!shown.contains("171"), "salt bytes: {shown}");
    }
}

#[test]
fn legacy_and_current_history_are_told_apart() {
    let dir = temp();
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.load_history("al").unwrap(), StoredHistory::None);
    fs::create_dir_all(store.user_dir("al")).unwrap();
    fs::write(
        store.history_path("al"),
        br#"{"version":1,"digests":["ab"]}"#,
    )
    .unwrap();
    assert_eq!(
        store.load_history("al").unwrap(),
        StoredHistory::Legacy(vec!["ab".into()])
    );
    let h = History {
        key: BackendKind::Tpm,
        salt: [7; HISTORY_SALT_LEN],
        digests: vec!["cd".into()],
    };
    store.save_history("al", &h).unwrap();
    assert_eq!(store.load_history("al").unwrap(), StoredHistory::Current(h));
    fs::write(store.history_path("al"), br#"{"version":2,"digests":[]}"#).unwrap();
    assert!(matches!(
        store.load_history("al"),
        Err(StoreError::Corrupt { .. })
    ));
    store.remove_history("al").unwrap();
    assert_eq!(store.load_history("al").unwrap(), StoredHistory::None);
    fs::remove_dir_all(&dir).unwrap();
}

/// What the key container, the face and the vault records share.
#[derive(Debug, serde::Deserialize)]
struct Note {
    version: u32,
    user: String,
}

impl UserRecord for Note {
    const KIND: &'static str = "note";
    const VERSION: u32 = 2;
    fn version(&self) -> u32 {
        self.version
    }
    fn user(&self) -> &str {
        &self.user
    }
}

#[test]
fn a_user_record_is_read_only_for_its_owner_and_in_this_format() {
    let dir = temp();
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("note.json");
    let read = |user: &str| read_user_record::<Note>(path.clone(), user);
    assert!(read("bob").unwrap().is_none(), "no file, no record");
    fs::write(&path, br#"{"version":2,"user":"bob"}"#).unwrap();
    assert_eq!(read("bob").unwrap().unwrap().user, "bob");
    let theirs = read("carol").unwrap_err();
    assert!(
        matches!(theirs, StoreError::Corrupt { .. })
            && theirs
                .to_string()
                .contains(r#"it belongs to "bob", not "carol""#),
        "{theirs}"
    );
    fs::write(&path, br#"{"version":1,"user":"bob"}"#).unwrap();
    let older = read("bob").unwrap_err();
    assert!(
        older
            .to_string()
            .contains("note format version 1 is not one this alohad reads (2)"),
        "{older}"
    );
    fs::write(&path, br#"{"version":3,"user":"bob","new":true}"#).unwrap();
    assert!(matches!(
        read("bob"),
        Err(StoreError::Newer { version: 3, .. })
    ));
    fs::remove_dir_all(&dir).unwrap();
}
