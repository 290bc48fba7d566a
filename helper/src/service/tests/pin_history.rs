//! PIN history: salted, keyed digests, honest failures, and no oracle for the current PIN.

use super::*;

#[test]
fn history_refuses_recent_pins() {
    let mut config = Config::default();
    config.pin.history = 2;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, "111222").unwrap();
    let change = |cur: &str, new: &str| {
        f.call(
            ROOT,
            Request::PinChange {
                user: "alice".into(),
                current_pin: Secret::new(cur),
                new_pin: Secret::new(new),
            },
        )
    };
    let e = change("111222", "111222").unwrap_err();
    assert!(e.message.contains("last 2 PINs"), "{}", e.message);
    change("111222", "333444").unwrap();
    assert_eq!(
        f.code(change("333444", "111222")),
        ErrorCode::PolicyViolation
    );
    change("333444", "555666").unwrap();
    // "111222" has now left the 2-deep history.
    change("555666", "111222").unwrap();
    // The history file holds keyed digests, never the PINs.
    let text = std::fs::read_to_string(f.dir().join("private/users/alice/history.json")).unwrap();
    for pin in ["111222", "333444", "555666"] {
        assert!(!text.contains(pin));
    }
}

#[test]
fn history_digests_are_salted_per_user_and_keyed_in_the_tpm() {
    let mut config = Config::default();
    config.pin.history = 3;
    let f = fixture_with(config, true);
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.set(ROOT, "bob", None, PIN).unwrap();
    let (a, b) = (f.history_json("alice"), f.history_json("bob"));
    assert_eq!(a["version"], 2);
    assert_eq!(a["key"], "tpm");
    assert_ne!(a["salt"], b["salt"], "a salt of each user's own");
    assert_ne!(
        a["digests"][0], b["digests"][0],
        "same PIN, different digests"
    );
    // The TPM's key stays in the TPM: the state directory holds only its blob, no key file.
    assert!(!f.dir().join("private/history.key").exists());
    assert!(f.dir().join("private/history-key.tpm").exists());
    assert_eq!(
        f.code(f.change(PIN, PIN)),
        ErrorCode::PolicyViolation,
        "the current PIN is in the history"
    );
    f.change(PIN, "918273").unwrap();
    // Without the TPM the history cannot be checked, and nothing is silently dropped.
    let mut config = Config::default();
    config.pin.history = 3;
    let without = f.rebuild(f.dir(), config, false);
    let before = std::fs::read(f.dir().join("private/users/bob/history.json")).unwrap();
    let r = without.handle_quietly(
        &ROOT,
        Request::PinReset {
            user: "bob".into(),
            password: None,
            new_pin: Secret::new("918273"),
        },
    );
    let Response::Error(e) = r else {
        panic!("{r:?}")
    };
    assert_eq!(e.code, ErrorCode::BackendUnavailable);
    assert!(e.message.contains("kept with the TPM"), "{}", e.message);
    assert!(e.message.contains("history.json"), "{}", e.message);
    assert_eq!(
        std::fs::read(f.dir().join("private/users/bob/history.json")).unwrap(),
        before
    );
}

#[test]
fn software_history_uses_one_key_file_and_a_slow_salted_digest() {
    let mut config = Config::default();
    config.pin.history = 2;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, PIN).unwrap();
    let h = f.history_json("alice");
    assert_eq!(h["key"], "software");
    let key = std::fs::read(f.dir().join("private/history.key")).unwrap();
    // The stored digest is MAC(key, Argon2id(salt, user, PIN)), not the old fast HMAC.
    let salt: [u8; 16] = aloha::hex::decode(h["salt"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let stretched = history::stretch(&FAST_KDF, &salt, "alice", &Secret::new(PIN)).unwrap();
    let expected = aloha::hex::encode(&history::software_mac(&key, &stretched).unwrap());
    assert_eq!(h["digests"][0], expected.as_str());
    assert_ne!(
        h["digests"][0],
        history::legacy_digest(&key, "alice", &Secret::new(PIN))
            .unwrap()
            .as_str()
    );
}

#[test]
fn a_version_1_history_is_honoured_once_then_replaced() {
    let mut config = Config::default();
    config.pin.history = 2;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, PIN).unwrap();
    // What an older alohad left: unsalted fast digests, the current PIN's among them.
    let key = std::fs::read(f.dir().join("private/history.key")).unwrap_or_else(|_| {
        let k = vec![5u8; 32];
        std::fs::write(f.dir().join("private/history.key"), &k).unwrap();
        k
    });
    let legacy = history::legacy_digest(&key, "alice", &Secret::new(PIN)).unwrap();
    let path = f.dir().join("private/users/alice/history.json");
    std::fs::write(
        &path,
        format!("{{\"version\":1,\"digests\":[\"{legacy}\"]}}"),
    )
    .unwrap();
    assert_eq!(f.code(f.change(PIN, PIN)), ErrorCode::PolicyViolation);
    let Response::Done { message } = f.change(PIN, "918273").unwrap() else {
        panic!()
    };
    assert!(message.contains("stronger format"), "{message}");
    let h = f.history_json("alice");
    assert_eq!(h["version"], 2);
    assert_eq!(h["digests"].as_array().unwrap().len(), 1);
    assert!(!std::fs::read_to_string(&path).unwrap().contains(&legacy));
}

#[test]
fn a_corrupt_history_says_exactly_what_to_do() {
    let mut config = Config::default();
    config.pin.history = 2;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, PIN).unwrap();
    let path = f.dir().join("private/users/alice/history.json");
    std::fs::write(&path, b"{\"version\":2,\"dig").unwrap();
    let e = f
        .call(
            ROOT,
            Request::PinReset {
                user: "alice".into(),
                password: None,
                new_pin: Secret::new(OTHER_PIN),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::StateCorrupt);
    assert!(
        e.message.contains(&format!("`rm {}`", path.display())),
        "{}",
        e.message
    );
    assert!(!e.message.contains("admin unlock"), "{}", e.message);
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"version\":2,\"dig");
}

#[test]
fn a_missing_history_key_is_never_silently_replaced() {
    for with_tpm in [false, true] {
        let mut config = Config::default();
        config.pin.history = 3;
        let f = fixture_with(config, with_tpm);
        f.set(ROOT, "alice", None, PIN).unwrap();
        let key = f.dir().join(if with_tpm {
            "private/history-key.tpm"
        } else {
            "private/history.key"
        });
        let history = f.dir().join("private/users/alice/history.json");
        std::fs::remove_file(&key).unwrap();
        let before = std::fs::read(&history).unwrap();
        // The reused PIN must not pass because a new key no longer recognises it.
        let e = f.reset_to(PIN).unwrap_err();
        assert_eq!(e.code, ErrorCode::StateCorrupt, "{}", e.message);
        assert!(
            e.message.contains(&key.display().to_string()),
            "{}",
            e.message
        );
        assert!(
            e.message.contains(&format!("`rm {}`", history.display())),
            "{}",
            e.message
        );
        assert!(!e.message.contains("admin unlock"), "{}", e.message);
        assert!(!key.exists(), "no new key was made");
        assert_eq!(std::fs::read(&history).unwrap(), before);
        // Doing what the message says works, and makes a new key.
        std::fs::remove_file(&history).unwrap();
        f.reset_to(PIN).unwrap();
        assert!(key.exists());
    }
}

#[test]
fn a_corrupt_history_key_names_the_file_and_the_fix() {
    let mut config = Config::default();
    config.pin.history = 3;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, PIN).unwrap();
    let key = f.dir().join("private/history.key");
    std::fs::write(&key, b"short").unwrap();
    let e = f.reset_to(OTHER_PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::StateCorrupt, "{}", e.message);
    assert!(
        e.message.contains(&key.display().to_string()),
        "{}",
        e.message
    );
    assert!(e.message.contains("history.json"), "{}", e.message);
    assert!(!e.message.contains("admin unlock"), "{}", e.message);
    assert!(!e.message.contains("pin reset"), "{}", e.message);
    assert_eq!(std::fs::read(&key).unwrap(), b"short");
}

#[test]
fn the_history_is_no_oracle_for_the_current_pin() {
    let mut config = Config::default();
    config.pin.history = 3;
    let f = fixture_with(config, true);
    f.set(ALICE, "alice", Some("alice-password"), PIN).unwrap();
    // Without the account password a reset says nothing about the history...
    let e = f
        .call(
            ALICE,
            Request::PinReset {
                user: "alice".into(),
                password: Some(Secret::new("guess")),
                new_pin: Secret::new(PIN),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPassword);
    // ... nor does a change with a wrong current PIN, which counts as a wrong PIN.
    let e = f
        .call(
            ALICE,
            Request::PinChange {
                user: "alice".into(),
                current_pin: Secret::new(OTHER_PIN),
                new_pin: Secret::new(PIN),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPin);
    assert_eq!(f.status("alice").failed_attempts, 1);
    // With the current PIN proven, the reuse is refused and the old PIN keeps working.
    let e = f
        .call(
            ALICE,
            Request::PinChange {
                user: "alice".into(),
                current_pin: Secret::new(PIN),
                new_pin: Secret::new(PIN),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PolicyViolation);
    f.sign_in(ALICE, "alice", PIN).unwrap();
    // A policy violation is still refused before anything else, at no cost.
    let e = f
        .call(
            ALICE,
            Request::PinReset {
                user: "alice".into(),
                password: None,
                new_pin: Secret::new("123456"),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PolicyViolation);
}
