//! One conformance suite for the key stores behind `KeyBackend`, run against the software vault
//! and against the TPM backend on a private swtpm, plus the TPM-only behaviour: dictionary-attack
//! counting and lockout, restarts, blobs from another TPM, an unreachable TPM, reconnection.
//!
//! Run: `cargo test --workspace --test backend`. Needs swtpm, swtpm-tools and tpm2-tools.

use aloha::Secret;
use aloha::challenge::{self, Nonce};
use aloha_helper::backend::software::SoftwareVault;
use aloha_helper::backend::tpm::TpmBackend;
use aloha_helper::backend::{
    AuthValue, BackendError, DaState, KdfParams, KeyBackend, KeyBlob, NewKey, SALT_LEN,
};
use aloha_tests::swtpm::{self, Swtpm};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// Argon2id this cheap keeps the software runs fast; the cost is stored in each blob, so the
/// code paths are those of the default.
const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 256,
    passes: 1,
    lanes: 1,
};

const USER: &str = "alice";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Software,
    Tpm,
}

/// A key store under test. Fields drop in order: the backend (and its TPM handles) before the
/// swtpm it talks to.
struct Store {
    backend: Box<dyn KeyBackend>,
    kind: Kind,
    /// Kept running for the backend; stopped when the store is dropped.
    _swtpm: Option<Swtpm>,
}

impl Store {
    fn new(kind: Kind) -> Store {
        match kind {
            Kind::Software => Store {
                backend: Box::new(SoftwareVault::with_kdf(TEST_KDF)),
                kind,
                _swtpm: None,
            },
            Kind::Tpm => {
                let tpm = Swtpm::start();
                Store {
                    backend: Box::new(open_tpm(&tpm)),
                    kind,
                    _swtpm: Some(tpm),
                }
            }
        }
    }

    /// A blob the other kind of backend made.
    fn foreign_blob(&self) -> KeyBlob {
        match self.kind {
            Kind::Software => KeyBlob::Tpm {
                public: vec![0, 4, 0, 0x23, 0, 0x0b],
                private: vec![0, 2, 1, 2],
            },
            Kind::Tpm => {
                SoftwareVault::with_kdf(TEST_KDF)
                    .create(&pin("123456"))
                    .expect("software key")
                    .blob
            }
        }
    }
}

fn open_tpm(tpm: &Swtpm) -> TpmBackend {
    swtpm::quiet_tss_logs();
    TpmBackend::open(&tpm.tcti())
        .unwrap_or_else(|e| panic!("cannot open the TPM backend on {}: {e}", tpm.tcti()))
}

fn pin(pin: &str) -> AuthValue {
    AuthValue::from_pin(&Secret::new(pin), &[7u8; SALT_LEN])
}

fn nonce() -> Nonce {
    Nonce::random().expect("randomness")
}

/// Sign a fresh sign-in challenge and check it the way pam_aloha does.
fn sign_and_verify(backend: &mut dyn KeyBackend, key: &NewKey, blob: &KeyBlob, auth: &AuthValue) {
    let n = nonce();
    let sig = backend
        .sign(blob, auth, &challenge::signin_digest(USER, &n))
        .expect("sign with the right PIN");
    assert_eq!(
        challenge::verify(&key.public_key, USER, &n, &sig),
        Ok(()),
        "signature must verify"
    );
    // And it proves exactly this challenge.
    assert!(challenge::verify(&key.public_key, USER, &nonce(), &sig).is_err());
    assert!(challenge::verify(&key.public_key, "bob", &n, &sig).is_err());
}

fn expect_err<T: std::fmt::Debug>(result: Result<T, BackendError>, what: &str) -> BackendError {
    match result {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

fn da(store: &mut Store) -> DaState {
    store
        .backend
        .dictionary_attack_state()
        .expect("DA state")
        .expect("a TPM has DA state")
}

// ---------------------------------------------------------------------------------------------
// The conformance suite: every function runs once per backend.

fn create_then_sign_verifies(kind: Kind) {
    let mut store = Store::new(kind);
    let auth = pin("123456");
    let key = store.backend.create(&auth).expect("create");
    assert_eq!(key.public_key.len(), 65, "SEC1 uncompressed");
    assert_eq!(key.public_key[0], 0x04);
    assert_eq!(key.blob.kind(), store.backend.kind());
    sign_and_verify(store.backend.as_mut(), &key, &key.blob, &auth);
    sign_and_verify(store.backend.as_mut(), &key, &key.blob, &auth);
    // Two keys are two different keys.
    let other = store.backend.create(&auth).expect("create a second key");
    assert_ne!(other.public_key, key.public_key);
    let n = nonce();
    let sig = store
        .backend
        .sign(&other.blob, &auth, &challenge::signin_digest(USER, &n))
        .expect("sign");
    assert!(challenge::verify(&key.public_key, USER, &n, &sig).is_err());
}

fn wrong_auth_is_auth_failed(kind: Kind) {
    let mut store = Store::new(kind);
    let key = store.backend.create(&pin("123456")).expect("create");
    let digest = challenge::signin_digest(USER, &nonce());
    for wrong in ["123457", "", "654321"] {
        let e = expect_err(
            store.backend.sign(&key.blob, &pin(wrong), &digest),
            "wrong PIN",
        );
        assert!(
            matches!(e, BackendError::AuthFailed),
            "wrong PIN gave {e:?}"
        );
    }
    // The right PIN still works afterwards.
    sign_and_verify(store.backend.as_mut(), &key, &key.blob, &pin("123456"));
}

fn change_auth_rewraps_the_same_key(kind: Kind) {
    let mut store = Store::new(kind);
    let (old, new) = (pin("111111"), pin("222222"));
    let key = store.backend.create(&old).expect("create");
    let e = expect_err(
        store.backend.change_auth(&key.blob, &pin("333333"), &new),
        "change with a wrong PIN",
    );
    assert!(matches!(e, BackendError::AuthFailed), "{e:?}");
    let rewrapped = store
        .backend
        .change_auth(&key.blob, &old, &new)
        .expect("change_auth");
    assert_ne!(rewrapped, key.blob);
    assert_eq!(rewrapped.kind(), key.blob.kind());
    let digest = challenge::signin_digest(USER, &nonce());
    let e = expect_err(
        store.backend.sign(&rewrapped, &old, &digest),
        "old PIN on the new copy",
    );
    assert!(matches!(e, BackendError::AuthFailed), "{e:?}");
    // Same key (same public key), new PIN.
    sign_and_verify(store.backend.as_mut(), &key, &rewrapped, &new);
    // The original copy is untouched: one key, one copy per protector.
    sign_and_verify(store.backend.as_mut(), &key, &key.blob, &old);
    let e = expect_err(
        store.backend.sign(&key.blob, &new, &digest),
        "new PIN on the old copy",
    );
    assert!(matches!(e, BackendError::AuthFailed), "{e:?}");
}

fn other_backend_blob_is_bad_blob(kind: Kind) {
    let mut store = Store::new(kind);
    let foreign = store.foreign_blob();
    let digest = challenge::signin_digest(USER, &nonce());
    let e = expect_err(
        store.backend.sign(&foreign, &pin("123456"), &digest),
        "foreign blob",
    );
    assert!(matches!(e, BackendError::BadBlob(_)), "{e:?}");
    let e = expect_err(
        store
            .backend
            .change_auth(&foreign, &pin("123456"), &pin("1")),
        "foreign blob",
    );
    assert!(matches!(e, BackendError::BadBlob(_)), "{e:?}");
}

/// Every single-byte flip and every truncation of every field of a real blob.
fn corruptions(blob: &KeyBlob) -> Vec<(String, KeyBlob)> {
    fn flips(
        name: &str,
        field: &[u8],
        rebuild: &dyn Fn(Vec<u8>) -> KeyBlob,
    ) -> Vec<(String, KeyBlob)> {
        let mut out = Vec::new();
        for i in 0..field.len() {
            let mut bad = field.to_vec();
            bad[i] ^= 0x80;
            out.push((format!("{name} byte {i} flipped"), rebuild(bad)));
        }
        for len in [0, 1, 2, field.len() / 2, field.len().saturating_sub(1)] {
            out.push((
                format!("{name} truncated to {len}"),
                rebuild(field[..len].to_vec()),
            ));
        }
        let mut longer = field.to_vec();
        longer.push(0);
        out.push((format!("{name} with a trailing byte"), rebuild(longer)));
        out
    }
    match blob.clone() {
        KeyBlob::Tpm { public, private } => {
            let mut out = flips("public", &public, &|p| KeyBlob::Tpm {
                public: p,
                private: private.clone(),
            });
            out.extend(flips("private", &private, &|p| KeyBlob::Tpm {
                public: public.clone(),
                private: p,
            }));
            out
        }
        KeyBlob::Software {
            kdf,
            salt,
            nonce,
            ciphertext,
        } => {
            let mut out = flips("salt", &salt, &|s| KeyBlob::Software {
                kdf,
                salt: s,
                nonce: nonce.clone(),
                ciphertext: ciphertext.clone(),
            });
            out.extend(flips("nonce", &nonce, &|n| KeyBlob::Software {
                kdf,
                salt: salt.clone(),
                nonce: n,
                ciphertext: ciphertext.clone(),
            }));
            out.extend(flips("ciphertext", &ciphertext, &|c| KeyBlob::Software {
                kdf,
                salt: salt.clone(),
                nonce: nonce.clone(),
                ciphertext: c,
            }));
            out
        }
    }
}

fn corrupted_blob_is_refused_without_panic(kind: Kind) {
    let mut store = Store::new(kind);
    let auth = pin("123456");
    let key = store.backend.create(&auth).expect("create");
    let before = (kind == Kind::Tpm).then(|| da(&mut store));
    let digest = challenge::signin_digest(USER, &nonce());
    let cases = corruptions(&key.blob);
    assert!(cases.len() > 50, "only {} corruptions", cases.len());
    for (what, bad) in &cases {
        let result = store.backend.sign(bad, &auth, &digest);
        match (kind, result) {
            // A TPM detects tampering before it checks the PIN: never blame the PIN for it.
            (Kind::Tpm, Err(BackendError::BadBlob(_))) => {}
            // An AEAD cannot tell a flipped ciphertext from a wrong key.
            (Kind::Software, Err(BackendError::BadBlob(_) | BackendError::AuthFailed)) => {}
            (_, other) => panic!("{what}: expected BadBlob, got {other:?}"),
        }
    }
    // The first few also through change_auth.
    for (what, bad) in cases.iter().take(8) {
        let result = store.backend.change_auth(bad, &auth, &pin("654321"));
        assert!(
            matches!(
                result,
                Err(BackendError::BadBlob(_) | BackendError::AuthFailed)
            ),
            "{what}: change_auth gave {result:?}"
        );
    }
    if let Some(before) = before {
        assert_eq!(
            da(&mut store).counter,
            before.counter,
            "a bad blob must not cost a DA attempt"
        );
    }
    // Nothing leaked: the real blob still works.
    sign_and_verify(store.backend.as_mut(), &key, &key.blob, &auth);
}

/// 24 cycles through every path that loads a key — success, wrong PIN, bad blob, change_auth —
/// on a TPM with 3 transient slots: any handle not flushed would fail a later cycle with 0x902.
fn many_cycles_do_not_leak(kind: Kind) {
    let mut store = Store::new(kind);
    let before = (kind == Kind::Tpm).then(|| da(&mut store));
    const CYCLES: u32 = 24;
    for i in 0..CYCLES {
        let auth = pin(&format!("{i:06}"));
        let key = store
            .backend
            .create(&auth)
            .unwrap_or_else(|e| panic!("cycle {i}: create: {e}"));
        sign_and_verify(store.backend.as_mut(), &key, &key.blob, &auth);
        let digest = challenge::signin_digest(USER, &nonce());
        let e = expect_err(
            store.backend.sign(&key.blob, &pin("wrong"), &digest),
            "wrong PIN",
        );
        assert!(matches!(e, BackendError::AuthFailed), "cycle {i}: {e:?}");
        let (_, bad) = &corruptions(&key.blob)[0];
        assert!(
            store.backend.sign(bad, &auth, &digest).is_err(),
            "cycle {i}: corrupt blob signed"
        );
        let new = pin(&format!("new{i}"));
        let rewrapped = store
            .backend
            .change_auth(&key.blob, &auth, &new)
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        sign_and_verify(store.backend.as_mut(), &key, &rewrapped, &new);
    }
    if let Some(before) = before {
        let after = da(&mut store);
        assert_eq!(
            after.counter,
            before.counter + CYCLES,
            "each wrong PIN is one DA failure"
        );
        assert!(!after.in_lockout);
    }
}

/// About one PIN in 256 derives an authValue that ends in a zero byte, which the TPM strips.
fn auth_value_ending_in_zero_works(kind: Kind) {
    let mut store = Store::new(kind);
    let secret = Secret::new("246810");
    let (auth, salt) = (0u32..100_000)
        .map(|i| {
            let mut salt = [0u8; SALT_LEN];
            salt[..4].copy_from_slice(&i.to_be_bytes());
            (AuthValue::from_pin(&secret, &salt), salt)
        })
        .find(|(a, _)| a.as_bytes()[31] == 0)
        .expect("an authValue ending in a zero byte");
    let key = store.backend.create(&auth).expect("create");
    sign_and_verify(store.backend.as_mut(), &key, &key.blob, &auth);
    // Same PIN, different salt: a different authValue, refused.
    let mut other_salt = salt;
    other_salt[15] ^= 1;
    let e = expect_err(
        store.backend.sign(
            &key.blob,
            &AuthValue::from_pin(&secret, &other_salt),
            &[1u8; 32],
        ),
        "other salt",
    );
    assert!(matches!(e, BackendError::AuthFailed), "{e:?}");
    let rewrapped = store
        .backend
        .change_auth(&key.blob, &auth, &auth)
        .expect("change_auth to itself");
    sign_and_verify(store.backend.as_mut(), &key, &rewrapped, &auth);
}

/// The password vault: sealed to the public key alone, opened only through the key store's
/// exchange with the key's own authValue — and still after a PIN change.
fn the_vault_opens_only_with_the_right_auth(kind: Kind) {
    use aloha_helper::vault::{Owner, open, seal};
    let mut store = Store::new(kind);
    let auth = pin("123456");
    let key = store.backend.create(&auth).expect("create");
    assert!(key.blob.can_exchange(), "new keys can open a vault");
    let owner = Owner {
        user: USER,
        uid: 1000,
        public_key: &key.public_key,
    };
    let sealed = seal(&owner, &Secret::new("correct horse 7")).expect("seal");
    let shared = store
        .backend
        .exchange(&key.blob, &auth, &sealed.ephemeral)
        .expect("exchange");
    assert_eq!(
        open(&owner, &sealed, &shared).expect("opens").expose(),
        "correct horse 7"
    );
    let wrong = expect_err(
        store
            .backend
            .exchange(&key.blob, &pin("654321"), &sealed.ephemeral),
        "an exchange with the wrong PIN",
    );
    assert!(matches!(wrong, BackendError::AuthFailed), "{wrong:?}");
    let bad_point = expect_err(
        store.backend.exchange(&key.blob, &auth, &[4; 65]),
        "an exchange with a point off the curve",
    );
    assert!(
        !matches!(bad_point, BackendError::AuthFailed),
        "{bad_point:?}"
    );
    let new_auth = pin("987654");
    let rewrapped = store
        .backend
        .change_auth(&key.blob, &auth, &new_auth)
        .expect("change auth");
    let shared = store
        .backend
        .exchange(&rewrapped, &new_auth, &sealed.ephemeral)
        .expect("exchange after a PIN change");
    assert!(open(&owner, &sealed, &shared).is_ok());
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn software() {
                super::$name(super::Kind::Software)
            }
            #[test]
            fn tpm() {
                super::$name(super::Kind::Tpm)
            }
        }
    )*};
}

conformance!(
    create_then_sign_verifies,
    wrong_auth_is_auth_failed,
    change_auth_rewraps_the_same_key,
    other_backend_blob_is_bad_blob,
    corrupted_blob_is_refused_without_panic,
    many_cycles_do_not_leak,
    auth_value_ending_in_zero_works,
    the_vault_opens_only_with_the_right_auth,
);

// ---------------------------------------------------------------------------------------------
// TPM only.

#[test]
fn software_vault_has_no_da_state() {
    let mut vault = SoftwareVault::with_kdf(TEST_KDF);
    assert_eq!(vault.dictionary_attack_state().expect("no error"), None);
}

#[test]
fn tpm_da_state_counts_a_failure() {
    let mut store = Store::new(Kind::Tpm);
    let before = da(&mut store);
    assert_eq!(
        (before.max_tries, before.recovery_seconds, before.in_lockout),
        (
            swtpm::WINDOWS_MAX_TRIES,
            swtpm::WINDOWS_RECOVERY_SECONDS,
            false
        ),
        "the harness sets Windows-like DA parameters: {before:?}"
    );
    let key = store.backend.create(&pin("123456")).expect("create");
    // A right PIN does not touch the counter.
    sign_and_verify(store.backend.as_mut(), &key, &key.blob, &pin("123456"));
    assert_eq!(da(&mut store).counter, before.counter);
    let e = expect_err(
        store.backend.sign(&key.blob, &pin("999999"), &[0u8; 32]),
        "wrong PIN",
    );
    assert!(matches!(e, BackendError::AuthFailed));
    let after = da(&mut store);
    assert_eq!(after.counter, before.counter + 1, "{before:?} -> {after:?}");
    // Read again: the value is fresh, not cached.
    let e = expect_err(
        store
            .backend
            .change_auth(&key.blob, &pin("999999"), &pin("1")),
        "wrong PIN",
    );
    assert!(matches!(e, BackendError::AuthFailed));
    assert_eq!(da(&mut store).counter, before.counter + 2);
}

#[test]
fn tpm_lockout_refuses_even_the_right_pin_and_every_key() {
    let tpm = Swtpm::start_with_da(3, 7200, 86400);
    let mut backend = open_tpm(&tpm);
    let right = pin("123456");
    let key = backend.create(&right).expect("create");
    let other_user = backend.create(&pin("777777")).expect("create");
    let digest = challenge::signin_digest(USER, &nonce());
    for i in 0..3 {
        let e = expect_err(
            backend.sign(&key.blob, &pin("000000"), &digest),
            "wrong PIN",
        );
        assert!(matches!(e, BackendError::AuthFailed), "attempt {i}: {e:?}");
    }
    let state = backend.dictionary_attack_state().expect("DA").expect("DA");
    assert_eq!(
        (state.counter, state.max_tries, state.in_lockout),
        (3, 3, true),
        "{state:?}"
    );
    let e = expect_err(
        backend.sign(&key.blob, &right, &digest),
        "right PIN in lockout",
    );
    assert!(matches!(e, BackendError::Lockout), "{e:?}");
    let e = expect_err(
        backend.change_auth(&key.blob, &right, &pin("1")),
        "change_auth in lockout",
    );
    assert!(matches!(e, BackendError::Lockout), "{e:?}");
    // The lockout is global: another user's key is refused too.
    let e = expect_err(
        backend.sign(&other_user.blob, &pin("777777"), &digest),
        "other user in lockout",
    );
    assert!(matches!(e, BackendError::Lockout), "{e:?}");
    assert!(e.to_string().contains("lockout"), "{e}");
}

#[test]
fn tpm_blob_survives_a_tpm_restart_and_a_new_backend() {
    let mut tpm = Swtpm::start();
    let auth = pin("123456");
    let key = {
        let mut backend = open_tpm(&tpm);
        let key = backend.create(&auth).expect("create");
        sign_and_verify(&mut backend, &key, &key.blob, &auth);
        let e = expect_err(backend.sign(&key.blob, &pin("1"), &[0u8; 32]), "wrong PIN");
        assert!(matches!(e, BackendError::AuthFailed));
        key
    };
    let pid = tpm.pid();
    tpm.restart();
    assert_ne!(tpm.pid(), pid, "a new swtpm process");
    let mut backend = open_tpm(&tpm);
    sign_and_verify(&mut backend, &key, &key.blob, &auth);
    let state = backend.dictionary_attack_state().expect("DA").expect("DA");
    // The failure is remembered, and the orderly shutdown added none.
    assert_eq!(state.counter, 1, "{state:?}");
    assert_eq!(state.max_tries, swtpm::WINDOWS_MAX_TRIES);
}

#[test]
fn tpm_blob_from_another_tpm_is_bad_blob() {
    let (tpm_a, tpm_b) = (Swtpm::start(), Swtpm::start());
    let mut a = open_tpm(&tpm_a);
    let mut b = open_tpm(&tpm_b);
    let auth = pin("123456");
    let key = a.create(&auth).expect("create on A");
    let before = b.dictionary_attack_state().expect("DA").expect("DA");
    let e = expect_err(b.sign(&key.blob, &auth, &[3u8; 32]), "A's blob on B");
    assert!(matches!(e, BackendError::BadBlob(_)), "{e:?}");
    assert!(e.to_string().contains("another TPM"), "{e}");
    let e = expect_err(b.change_auth(&key.blob, &auth, &pin("1")), "A's blob on B");
    assert!(matches!(e, BackendError::BadBlob(_)), "{e:?}");
    assert_eq!(
        b.dictionary_attack_state()
            .expect("DA")
            .expect("DA")
            .counter,
        before.counter
    );
    // A still signs with it, B with its own.
    sign_and_verify(&mut a, &key, &key.blob, &auth);
    let own = b.create(&auth).expect("create on B");
    sign_and_verify(&mut b, &own, &own.blob, &auth);
}

#[test]
fn tpm_unreachable_is_unavailable_with_a_clear_message() {
    swtpm::quiet_tss_logs();
    let e = expect_err(
        TpmBackend::open("swtpm:host=127.0.0.1,port=1"),
        "nothing listens on port 1",
    );
    let BackendError::Unavailable(msg) = &e else {
        panic!("expected Unavailable, got {e:?}")
    };
    assert!(msg.contains("swtpm:host=127.0.0.1,port=1"), "{msg}");
    assert!(msg.contains("cannot open the TPM"), "{msg}");
    let e = expect_err(TpmBackend::open("no-such-tcti:whatever"), "unknown TCTI");
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    let e = expect_err(
        TpmBackend::open("swtpm:host=127.0.0.1,port=notaport"),
        "bad port",
    );
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
}

#[test]
fn tpm_reconnects_after_a_tpm_restart_without_reopening() {
    let mut tpm = Swtpm::start();
    let mut backend = open_tpm(&tpm);
    let auth = pin("123456");
    let key = backend.create(&auth).expect("create");
    sign_and_verify(&mut backend, &key, &key.blob, &auth);

    // The TPM restarts under alohad: its transient primary and sessions are gone.
    tpm.restart();
    sign_and_verify(&mut backend, &key, &key.blob, &auth);

    // The TPM goes away: a clear Unavailable, no panic; then it comes back.
    tpm.stop();
    let e = expect_err(backend.sign(&key.blob, &auth, &[5u8; 32]), "TPM stopped");
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    let e = expect_err(backend.dictionary_attack_state(), "TPM stopped");
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    let e = expect_err(backend.create(&auth), "TPM stopped");
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    tpm.restart();
    sign_and_verify(&mut backend, &key, &key.blob, &auth);
    let fresh = backend.create(&auth).expect("create after reconnect");
    sign_and_verify(&mut backend, &fresh, &fresh.blob, &auth);
    assert_eq!(
        backend
            .dictionary_attack_state()
            .expect("DA")
            .expect("DA")
            .counter,
        0
    );
}

/// The backend keeps its salted session between operations. A session the TPM no longer has
/// (here flushed by a second backend opening the same TPM, as a hibernation or a resource
/// manager's context gap would lose it) fails at the key's load, before the PIN is sent: the
/// operation runs again in a fresh session, and the TPM counts no failure.
#[test]
fn tpm_a_kept_session_the_tpm_lost_is_replaced_without_a_counted_failure() {
    let tpm = Swtpm::start();
    let mut backend = open_tpm(&tpm);
    let auth = pin("123456");
    let key = backend.create(&auth).expect("create");
    sign_and_verify(&mut backend, &key, &key.blob, &auth);
    for _ in 0..2 {
        // Flushes every loaded session and object, ours included.
        drop(open_tpm(&tpm));
        sign_and_verify(&mut backend, &key, &key.blob, &auth);
        let changed = backend
            .change_auth(&key.blob, &auth, &pin("654321"))
            .expect("change_auth in a fresh session");
        drop(open_tpm(&tpm));
        sign_and_verify(&mut backend, &key, &changed, &pin("654321"));
    }
    // A wrong PIN still fails as one, and the session after it is a new one that works.
    let e = expect_err(
        backend.sign(&key.blob, &pin("000000"), &[1u8; 32]),
        "wrong PIN",
    );
    assert!(matches!(e, BackendError::AuthFailed), "{e:?}");
    sign_and_verify(&mut backend, &key, &key.blob, &auth);
    let da = backend.dictionary_attack_state().expect("DA").expect("DA");
    assert_eq!(da.counter, 1, "only the wrong PIN counted: {da:?}");
}

/// An alohad killed with SIGKILL never flushes its primary; without a resource manager the
/// handle stays loaded in the TPM. Three such crashes would fill swtpm's 3 object slots (0x902
/// for every later start) unless a new backend clears what is left.
#[test]
fn tpm_handles_left_by_a_killed_backend_are_flushed_at_open() {
    let tpm = Swtpm::start();
    let auth = pin("123456");
    let key = {
        let mut backend = open_tpm(&tpm);
        backend.create(&auth).expect("create")
    };
    for _ in 0..3 {
        // Like SIGKILL: no Drop, so no TPM2_FlushContext for the primary.
        std::mem::forget(open_tpm(&tpm));
    }
    let mut backend = open_tpm(&tpm);
    sign_and_verify(&mut backend, &key, &key.blob, &auth);
    let fresh = backend.create(&auth).expect("create after the crashes");
    sign_and_verify(&mut backend, &fresh, &fresh.blob, &auth);
}

#[test]
fn tpm_backend_is_send_and_debug_shows_no_secret() {
    fn assert_send<T: Send>() {}
    assert_send::<TpmBackend>();
    let tpm = Swtpm::start();
    let backend = open_tpm(&tpm);
    let shown = format!("{backend:?}");
    assert!(shown.contains(&tpm.tcti()), "{shown}");
    let blob = KeyBlob::Tpm {
        public: vec![1; 10],
        private: vec![2; 10],
    };
    assert!(
        !format!("{blob:?}").contains("0101"),
        "Debug of a blob shows sizes only"
    );
}

/// A TCP relay between the TPM backend and swtpm that records every byte in both directions:
/// what someone with a probe on the TPM bus would see.
struct BusSniffer {
    port: u16,
    to_tpm: Arc<Mutex<Vec<u8>>>,
    from_tpm: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl BusSniffer {
    /// Relay port Q to `tpm_port` and Q+1 to its control port.
    fn start(tpm_port: u16) -> BusSniffer {
        let (port, listeners) = loop {
            let q = swtpm::free_port_pair();
            let bind = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p));
            if let (Ok(a), Ok(b)) = (bind(q), bind(q + 1)) {
                break (q, [a, b]);
            }
        };
        let sniffer = BusSniffer {
            port,
            to_tpm: Arc::default(),
            from_tpm: Arc::default(),
            stop: Arc::default(),
        };
        for (offset, listener) in (0u16..).zip(listeners) {
            let (to_tpm, from_tpm, stop) = (
                sniffer.to_tpm.clone(),
                sniffer.from_tpm.clone(),
                sniffer.stop.clone(),
            );
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, tpm_port + offset))
                    else {
                        continue;
                    };
                    relay(
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                        to_tpm.clone(),
                    );
                    relay(server, client, from_tpm.clone());
                }
            });
        }
        sniffer
    }

    fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    fn seen(&self, needle: &[u8]) -> bool {
        let found = |buf: &Arc<Mutex<Vec<u8>>>| {
            buf.lock()
                .expect("lock")
                .windows(needle.len())
                .any(|w| w == needle)
        };
        found(&self.to_tpm) || found(&self.from_tpm)
    }

    fn bytes(&self) -> usize {
        self.to_tpm.lock().expect("lock").len() + self.from_tpm.lock().expect("lock").len()
    }
}

impl Drop for BusSniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake both accept loops so their threads end.
        for p in [self.port, self.port + 1] {
            let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, p));
        }
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, log: Arc<Mutex<Vec<u8>>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    log.lock().expect("lock").extend_from_slice(&buf[..n]);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Neither the authValues nor the signed digest cross the bus in clear: create, sign and
/// change_auth run in salted sessions with parameter encryption. (A password session would send
/// the authValue as is; this test would see it.)
#[test]
fn tpm_auth_values_never_cross_the_bus_in_clear() {
    let tpm = Swtpm::start();
    let sniffer = BusSniffer::start(tpm.port());
    swtpm::quiet_tss_logs();
    let mut backend = TpmBackend::open(&sniffer.tcti()).expect("open through the sniffer");
    let (old, new) = (pin("135790"), pin("246802"));
    let key = backend.create(&old).expect("create");
    let n = nonce();
    let digest = challenge::signin_digest(USER, &n);
    let sig = backend.sign(&key.blob, &old, &digest).expect("sign");
    assert_eq!(challenge::verify(&key.public_key, USER, &n, &sig), Ok(()));
    let rewrapped = backend
        .change_auth(&key.blob, &old, &new)
        .expect("change_auth");
    sign_and_verify(&mut backend, &key, &rewrapped, &new);
    let e = expect_err(
        backend.sign(&key.blob, &pin("000000"), &digest),
        "wrong PIN",
    );
    assert!(matches!(e, BackendError::AuthFailed));
    drop(backend);

    assert!(
        sniffer.bytes() > 1000,
        "the sniffer saw the traffic ({} bytes)",
        sniffer.bytes()
    );
    // Control: the public key travels in clear (TPM2_Create's outPublic), and the sniffer sees it.
    assert!(
        sniffer.seen(&key.public_key[1..17]),
        "the sniffer must see the public key go by"
    );
    for (name, secret) in [
        ("old authValue", &old),
        ("new authValue", &new),
        ("wrong authValue", &pin("000000")),
    ] {
        for window in secret.as_bytes().windows(8) {
            assert!(
                !sniffer.seen(window),
                "8 bytes of the {name} crossed the bus in clear"
            );
        }
    }
    assert!(
        !sniffer.seen(&digest[..16]),
        "the digest crossed the bus in clear"
    );
}
