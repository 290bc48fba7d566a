//! The password vault through real libpam and a real alohad on swtpm: `aloha vault enable`
//! checks the password and seals it; a PIN sign-in then hands it to the modules after
//! pam_aloha as PAM_AUTHTOK (pam_exec's expose_authtok reads it, as pam_gnome_keyring would,
//! and would prompt if it were not set); a password sign-in re-seals a changed password
//! through the `keep_password` line after the password module; a PIN reset and `aloha vault disable` forget it; the software vault refuses
//! it unless the administrator allows it.

use std::time::Duration;

use aloha::Secret;
use aloha::client::Client;
use aloha::protocol::{Request, Response};
use aloha_tests::fixture::{Fixture, Kind};
use aloha_tests::pam::*;

const PIN: &str = "482915";
const PASSWORD: &str = "correct horse 7";
const NEW_PASSWORD: &str = "battery staple 8";

struct Setup {
    f: Fixture,
    pam: PamDir,
    /// What pam_exec read from PAM_AUTHTOK after the last sign-in.
    seen: std::path::PathBuf,
}

fn setup(kind: Kind, vault: &str) -> Setup {
    let vault = vault.to_string();
    let f = Fixture::start(kind, move |o| {
        o.passwords = vec![("nobody".into(), PASSWORD.into())];
        o.extra = vault;
    });
    f.daemon
        .aloha(
            &["pin", "set", "--user", "nobody", "--pin-stdin"],
            &format!("{PIN}\n"),
        )
        .ok();
    let pam = PamDir::new();
    let seen = pam.path().join("seen");
    let record = pam.path().join("record.sh");
    // pam_exec runs it at pam_setcred too, with nothing on stdin: only a password is kept.
    std::fs::write(
        &record,
        format!(
            "#!/bin/sh\nv=$(tr -d '\\000')\n[ -n \"$v\" ] && printf '%s' \"$v\" > '{}'\nexit 0\n",
            seen.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&record)
        .status()
        .unwrap();
    let module = format!("MODULE config={}", f.daemon.config_path().display());
    // pam_aloha, then what pam_gnome_keyring does: read PAM_AUTHTOK (pam_exec prompts for a
    // password when it is not set — the scripted conversation answers only what it is given).
    pam.service(
        "login",
        &[
            &format!("auth required {module}"),
            &format!(
                "auth required pam_exec.so expose_authtok quiet {}",
                record.display()
            ),
        ],
    );
    // A password sign-in: an empty PIN falls through to pam_unix, which asks for the password
    // and sets PAM_AUTHTOK before it checks it ("nobody" has none it would accept, so
    // pam_permit stands in for the check that succeeded); pam_aloha's keep_password line
    // after it finds the password (libpam wipes it before setcred).
    pam.service(
        "password",
        &[
            &format!("auth [success=done default=ignore] {module}"),
            "auth optional pam_unix.so nodelay",
            "auth required pam_permit.so",
            &format!("auth optional {module} keep_password"),
        ],
    );
    Setup { f, pam, seen }
}

impl Setup {
    fn seen(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.seen).ok()?;
        let _ = std::fs::remove_file(&self.seen);
        Some(text.trim_end_matches('\0').to_string())
    }

    fn status(&self) -> serde_json::Value {
        let run = self
            .f
            .daemon
            .aloha(&["status", "--json", "--user", "nobody"], "");
        run.ok();
        serde_json::from_str(&run.stdout).unwrap()
    }
}

#[test]
fn a_pin_sign_in_hands_the_kept_password_to_the_stack() {
    let s = setup(Kind::Tpm, "");
    // No vault yet: the module after pam_aloha has to ask for the password itself.
    let r = s.pam.authenticate("login", "nobody", &pin(PIN), 0, None);
    assert_ne!(r.rc, PAM_SUCCESS, "nothing set PAM_AUTHTOK: {r:?}");
    assert_eq!(s.status()["vault"]["sealed_at"], serde_json::Value::Null);

    s.f.daemon
        .aloha(
            &["vault", "enable", "--user", "nobody", "--pin-stdin"],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    let status = s.status();
    assert!(status["vault"]["sealed_at"].is_u64(), "{status}");
    assert_eq!(status["vault"]["problem"], serde_json::Value::Null);
    let shown = s.f.daemon.aloha(&["status", "--user", "nobody"], "");
    assert!(shown.ok().stdout.contains("Password vault"), "{shown:?}");
    let stored = std::fs::read_to_string(
        s.f.daemon
            .state_dir()
            .join("private/users/nobody/vault.json"),
    )
    .unwrap();
    assert!(!stored.contains(PASSWORD), "the password in clear on disk");

    // The PIN signs in and the next module finds the password without asking.
    let r = s.pam.authenticate("login", "nobody", &pin(PIN), 0, None);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert_eq!(
        r.transcript.hidden_prompts().len(),
        1,
        "only the PIN: {r:?}"
    );
    assert_eq!(s.seen().as_deref(), Some(PASSWORD));
    assert!(
        !s.f.daemon.log().contains(PASSWORD),
        "the password in alohad's log"
    );

    // A wrong PIN opens nothing (and the module after it must ask).
    let r = s
        .pam
        .authenticate("login", "nobody", &pin("739164"), 0, None);
    assert_ne!(r.rc, PAM_SUCCESS);
    assert_eq!(s.seen(), None);

    // The password changed elsewhere; a password sign-in re-seals the new one (setcred).
    let new = NEW_PASSWORD;
    let answers = vec![Answer::Text(String::new()), Answer::Text(new.into())];
    let r = s.pam.authenticate("password", "nobody", &answers, 0, None);
    assert_eq!((r.rc, r.setcred), (PAM_SUCCESS, PAM_SUCCESS), "{r:?}");
    assert_eq!(
        r.transcript.hidden_prompts().len(),
        2,
        "the PIN, the password: {r:?}"
    );
    let r = s.pam.authenticate("login", "nobody", &pin(PIN), 0, None);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert_eq!(
        s.seen().as_deref(),
        Some(new),
        "the re-sealed password: {}",
        s.f.daemon.log()
    );

    // The user forgets their own vault.
    s.f.daemon.aloha_as(65534, &["vault", "disable"], "").ok();
    assert_eq!(s.status()["vault"]["sealed_at"], serde_json::Value::Null);

    // A wrong password is not kept (last: it starts the doubling wait for password checks).
    s.f.daemon
        .aloha(
            &["vault", "enable", "--user", "nobody", "--pin-stdin"],
            "not the password\n",
        )
        .refused("wrong");
    assert_eq!(s.status()["vault"]["sealed_at"], serde_json::Value::Null);
}

#[test]
fn root_s_capture_replaces_it_and_a_reset_or_removal_forgets_it() {
    let s = setup(Kind::Tpm, "");
    s.f.daemon
        .aloha(
            &["vault", "enable", "--user", "nobody", "--pin-stdin"],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    // Root's capture (pam_aloha's setcred) replaces it.
    let mut c = Client::connect(&s.f.daemon.socket(), Duration::from_secs(10), "test").unwrap();
    let reply = c
        .call(&Request::VaultCapture {
            user: "nobody".into(),
            password: Secret::new("captured 9"),
        })
        .unwrap();
    assert!(matches!(reply, Response::Done { .. }), "{reply:?}");
    let r = s.pam.authenticate("login", "nobody", &pin(PIN), 0, None);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert_eq!(s.seen().as_deref(), Some("captured 9"));

    // A PIN reset makes a new key: the vault of the old one is gone, and said so.
    let reset = s.f.daemon.aloha(
        &["pin", "reset", "--user", "nobody", "--pin-stdin"],
        "593817\n",
    );
    assert!(reset.ok().stdout.contains("password vault"), "{reset:?}");
    assert_eq!(s.status()["vault"]["sealed_at"], serde_json::Value::Null);
    let r = s
        .pam
        .authenticate("login", "nobody", &pin("593817"), 0, None);
    assert_ne!(r.rc, PAM_SUCCESS, "nothing to hand over any more: {r:?}");

    // Kept again, then the administrator removes the user: the vault goes with the key.
    s.f.daemon
        .aloha(
            &["vault", "enable", "--user", "nobody", "--pin-stdin"],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    let vault =
        s.f.daemon
            .state_dir()
            .join("private/users/nobody/vault.json");
    assert!(vault.exists());
    s.f.daemon
        .aloha(&["admin", "remove", "--user", "nobody"], "")
        .ok();
    assert!(!vault.exists(), "admin remove leaves the vault behind");
}

#[test]
fn the_software_vault_keeps_no_password_unless_allowed() {
    let s = setup(Kind::Software, "");
    s.f.daemon
        .aloha(
            &["vault", "enable", "--user", "nobody", "--pin-stdin"],
            &format!("{PASSWORD}\n"),
        )
        .refused("not allowed");
    assert_eq!(s.status()["vault"]["allowed"], false);

    let s = setup(Kind::Software, "[vault]\nallow = \"any\"\n");
    s.f.daemon
        .aloha(
            &["vault", "enable", "--user", "nobody", "--pin-stdin"],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    let r = s.pam.authenticate("login", "nobody", &pin(PIN), 0, None);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert_eq!(s.seen().as_deref(), Some(PASSWORD));
}
