use super::*;

struct Dir(PathBuf);
impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("aloha-doctor-pam-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (name, body) in files {
            std::fs::write(d.join(name), body).unwrap();
        }
        std::fs::write(d.join("pam_aloha.so"), b"").unwrap();
        Dir(d)
    }
    fn checks(&self) -> Vec<Check> {
        let dirs = std::slice::from_ref(&self.0);
        checks(&Config::default(), dirs, dirs)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PASSWORD_ONLY: &str = "auth required pam_unix.so\n";
const COMMON_AUTH: &str = "auth [success=2 default=ignore] pam_aloha.so\n\
    auth [success=1 default=ignore] pam_unix.so nullok\n\
    auth requisite pam_deny.so\nauth required pam_permit.so\n";

fn found<'a>(c: &'a [Check], level: Level, text: &str) -> Option<&'a Check> {
    c.iter().find(|c| c.level == level && c.what.contains(text))
}

#[test]
fn pam_auth_update_s_stack_is_fine_everywhere_it_reaches() {
    let d = Dir::new(&[
        ("aloha", PASSWORD_ONLY),
        ("common-auth", COMMON_AUTH),
        ("sudo", "@include common-auth\n"),
        (
            "login",
            "auth optional pam_faildelay.so\n@include common-auth\n",
        ),
    ]);
    let c = d.checks();
    assert!(c.iter().all(|c| c.level == Level::Ok), "{c:#?}");
    assert!(
        found(&c, Level::Ok, "sudo: PIN first (").is_some(),
        "{c:#?}"
    );
    assert!(
        found(&c, Level::Ok, "login: PIN first (").is_some(),
        "{c:#?}"
    );
    // common-auth itself is not a service.
    assert!(
        !c.iter().any(|c| c.what.starts_with("common-auth")),
        "{c:#?}"
    );
}

#[test]
fn lock_outs_and_missing_fallbacks_are_named() {
    let d = Dir::new(&[
        ("aloha", PASSWORD_ONLY),
        (
            "req",
            "auth required pam_aloha.so\nauth required pam_unix.so\n",
        ),
        (
            "die",
            "auth [success=done default=die] pam_aloha.so\nauth required pam_unix.so\n",
        ),
        (
            "nodefault",
            "auth [success=done ignore=ignore] pam_aloha.so\nauth required pam_unix.so\n",
        ),
        (
            "only",
            "auth sufficient pam_aloha.so\nauth required pam_deny.so\n",
        ),
        (
            "late",
            "auth sufficient pam_unix.so\nauth sufficient pam_aloha.so\nauth required pam_deny.so\n",
        ),
        (
            "opt",
            "auth optional pam_aloha.so\nauth required pam_unix.so\n",
        ),
        (
            "twice",
            "auth sufficient pam_aloha.so\nauth sufficient pam_aloha.so\nauth required pam_unix.so\n",
        ),
        (
            "gone",
            "auth sufficient /nowhere/pam_aloha.so\nauth required pam_unix.so\n",
        ),
        (
            "soft",
            "-auth sufficient /nowhere/pam_aloha.so\nauth required pam_unix.so\n",
        ),
    ]);
    let c = d.checks();
    assert!(
        found(&c, Level::Problem, "req: pam_aloha is `required`").is_some(),
        "{c:#?}"
    );
    assert!(
        found(
            &c,
            Level::Problem,
            "die: pam_aloha is `[success=done default=die]`"
        )
        .is_some(),
        "{c:#?}"
    );
    // A wrong PIN (auth_err) falls to libpam's `bad` when nothing names it.
    assert!(found(&c, Level::Problem, "nodefault: ").is_some(), "{c:#?}");
    assert!(
        found(&c, Level::Warning, "only: no password module follows").is_some(),
        "{c:#?}"
    );
    assert!(
        found(&c, Level::Warning, "late: the password (pam_unix.so").is_some(),
        "{c:#?}"
    );
    assert!(
        found(&c, Level::Warning, "opt: pam_aloha is `optional`").is_some(),
        "{c:#?}"
    );
    assert!(
        found(&c, Level::Warning, "twice: pam_aloha runs twice").is_some(),
        "{c:#?}"
    );
    assert!(
        found(&c, Level::Problem, "gone: /nowhere/pam_aloha.so").is_some(),
        "{c:#?}"
    );
    assert!(
        !c.iter()
            .any(|c| c.what.starts_with("soft:") && c.level != Level::Ok),
        "{c:#?}"
    );
    // Every finding has a fix.
    assert!(
        c.iter()
            .filter(|c| c.level >= Level::Warning)
            .all(|c| c.fix.is_some())
    );
}

#[test]
fn the_password_service_and_a_machine_without_aloha() {
    let d = Dir::new(&[
        ("aloha", "@include common-auth\n"),
        ("common-auth", COMMON_AUTH),
        ("sudo", PASSWORD_ONLY),
    ]);
    let c = d.checks();
    assert!(
        found(
            &c,
            Level::Problem,
            "password service \"aloha\" runs pam_aloha"
        )
        .is_some(),
        "{c:#?}"
    );
    let d = Dir::new(&[
        ("sudo", PASSWORD_ONLY),
        ("login", PASSWORD_ONLY),
        ("aloha", PASSWORD_ONLY),
    ]);
    let c = d.checks();
    assert!(
        found(&c, Level::Warning, "no PAM service in").is_some(),
        "{c:#?}"
    );
    assert!(
        found(&c, Level::Ok, "asks only for the password").is_some(),
        "{c:#?}"
    );
    let d = Dir::new(&[("sudo", PASSWORD_ONLY)]);
    assert!(found(&d.checks(), Level::Problem, "is missing from").is_some());
}

#[test]
fn control_fields_read_as_libpam_reads_them() {
    let a = Actions::of("[success=2 default=ignore]");
    assert_eq!((a.success.as_str(), a.auth_err.as_str()), ("2", "ignore"));
    assert!(a.success_ends_or_jumps());
    let a = Actions::of("[success=ok new_authtok_reqd=ok]");
    assert_eq!(a.ignore, "bad");
    assert!(!a.success_ends_or_jumps());
    assert_eq!(Actions::of("requisite").auth_err, "die");
    assert!(Actions::of("sufficient").success_ends_or_jumps());
}
