use super::*;
use crate::host::Level;
use crate::scripted::{Answer, PIN, Reply, ScriptedDaemon, ScriptedHost, Status};

struct Case {
    name: &'static str,
    enrolled: bool,
    status: Status,
    answer: Answer,
    reply: Reply,
    verdict: Verdict,
    /// Each PAM_ERROR_MSG must contain the matching text.
    told: &'static [&'static str],
    /// The one log line that is not debug must contain this.
    logged: &'static str,
    prompted: bool,
    sign_ins: usize,
}

const OPEN: Case = Case {
    name: "",
    enrolled: true,
    status: Status::Open,
    answer: Answer::Pin(PIN),
    reply: Reply::Signed,
    verdict: Verdict::Success,
    told: &[],
    logged: "user=\"alice\" service=\"sudo\" result=success (TPM 2.0)",
    prompted: true,
    sign_ins: 1,
};

const CASES: &[Case] = &[
    Case {
        name: "right PIN",
        ..OPEN
    },
    Case {
        name: "wrong PIN, tries left",
        reply: Reply::WrongPin { left: 2 },
        verdict: Verdict::AuthErr,
        told: &["Wrong PIN. 2 more tries before the lock."],
        logged: "result=wrong_pin (WrongPin)",
        ..OPEN
    },
    Case {
        name: "wrong PIN, none left",
        reply: Reply::WrongPin { left: 0 },
        verdict: Verdict::MaxTries,
        told: &["Wrong PIN. 0 more tries before the lock."],
        logged: "result=wrong_pin_now_locked",
        ..OPEN
    },
    Case {
        name: "a waiting time before the prompt",
        status: Status::Delayed,
        verdict: Verdict::AuthErr,
        told: &["Too many wrong PINs: next try in 10 minutes. Use your password."],
        logged: "result=waiting: not prompting",
        prompted: false,
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "a waiting time after the PIN",
        reply: Reply::Delayed,
        verdict: Verdict::AuthErr,
        told: &["Next try in 10 minutes"],
        logged: "result=waiting (Delayed)",
        ..OPEN
    },
    Case {
        name: "locked before the prompt",
        status: Status::Locked,
        verdict: Verdict::MaxTries,
        told: &["Your PIN is locked after too many wrong tries: use your password."],
        logged: "result=locked: not prompting",
        prompted: false,
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "the TPM guard pauses PIN sign-in",
        status: Status::TpmPaused,
        verdict: Verdict::Unavailable,
        told: &["PIN sign-in is paused for everyone for 2 hours: use your password."],
        logged: "result=unavailable: the TPM guard pauses PIN sign-in; not prompting",
        prompted: false,
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "an expired PIN is not asked for",
        status: Status::PinExpired,
        verdict: Verdict::Unavailable,
        told: &["Your PIN has expired: use your password, then `aloha pin change`."],
        logged: "result=unavailable: the PIN expired at 2027-01-15 07:00:00 UTC; not prompting",
        prompted: false,
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "the user's share of the TPM's failure budget is used",
        status: Status::TpmShareUsed,
        verdict: Verdict::AuthErr,
        told: &["Your wrong PINs used your TPM share: next try in 2 hours. Use your password."],
        logged: "result=waiting: the user's share of the TPM's failure budget is used; not prompting",
        prompted: false,
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "locked after the PIN",
        reply: Reply::Locked,
        verdict: Verdict::MaxTries,
        told: &["use your password"],
        logged: "result=locked (Locked)",
        ..OPEN
    },
    Case {
        name: "empty PIN",
        answer: Answer::Pin(""),
        verdict: Verdict::Ignore,
        logged: "result=ignore: empty PIN",
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "cancelled conversation",
        answer: Answer::Cancel,
        verdict: Verdict::Ignore,
        logged: "result=ignore: PIN prompt cancelled or failed",
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "unexpected reply",
        reply: Reply::Done,
        verdict: Verdict::AuthErr,
        told: &["Aloha's answer was not valid; use your password."],
        logged: "result=denied: an unexpected done reply from /fake.sock after the PIN",
        ..OPEN
    },
    Case {
        name: "garbage reply",
        reply: Reply::Garbage,
        verdict: Verdict::AuthErr,
        told: &["Aloha's answer was not valid"],
        logged: "result=denied: no valid reply (alohad sent a malformed reply",
        ..OPEN
    },
    Case {
        name: "no reply after the PIN",
        reply: Reply::Silence,
        verdict: Verdict::AuthErr,
        told: &["Aloha did not answer in time; use your password."],
        logged: "result=denied: no answer within timeout=10s after the PIN was sent",
        ..OPEN
    },
    Case {
        name: "too little of the timeout left after the status check",
        status: Status::Slow,
        verdict: Verdict::Unavailable,
        logged: "result=unavailable: only 1.5s of timeout=10s left after the status check",
        prompted: false,
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "bad signature",
        reply: Reply::RandomSignature,
        verdict: Verdict::AuthErr,
        told: &["Aloha's answer was not valid"],
        logged: "result=denied: an answer that does not verify",
        ..OPEN
    },
    Case {
        name: "signature by another key",
        reply: Reply::SignedByAnotherKey,
        verdict: Verdict::AuthErr,
        told: &["Aloha's answer was not valid"],
        logged: "does not verify against the user's registered public key",
        ..OPEN
    },
    Case {
        name: "a key alohad republished while answering",
        reply: Reply::SignedByRepublishedKey,
        verdict: Verdict::Success,
        logged: "result=success (TPM 2.0)",
        ..OPEN
    },
    Case {
        name: "registered key but no container",
        status: Status::NoContainer,
        verdict: Verdict::Unavailable,
        logged: "result=unavailable: registered key but no container (alohad)",
        prompted: false,
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "no registered key",
        enrolled: false,
        verdict: Verdict::Unavailable,
        logged: "result=unavailable: no Aloha PIN enrolled",
        prompted: false,
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "daemon down before the prompt",
        status: Status::Down,
        verdict: Verdict::Unavailable,
        logged: "result=unavailable: alohad is not reachable at /fake.sock",
        prompted: false,
        sign_ins: 0,
        ..OPEN
    },
    Case {
        name: "daemon gone before the PIN was sent",
        reply: Reply::Down,
        verdict: Verdict::Unavailable,
        told: &["Aloha did not answer; use your password."],
        logged: "result=unavailable: alohad is not reachable",
        ..OPEN
    },
    Case {
        name: "the key store cannot be used",
        reply: Reply::BackendUnavailable,
        verdict: Verdict::Unavailable,
        told: &["The TPM cannot be used now"],
        logged: "result=unavailable (BackendUnavailable)",
        ..OPEN
    },
];

#[test]
fn every_verdict_and_its_message() {
    for case in CASES {
        let mut host = ScriptedHost::new("sudo", None);
        host.answer = case.answer;
        let mut fake = ScriptedDaemon {
            enrolled: case.enrolled,
            status: case.status,
            reply: case.reply,
            ..ScriptedDaemon::OPEN
        };
        let verdict = authenticate_with(&mut host, &Args::parse(["debug"]), |_| Ok(&mut fake));
        let name = case.name;
        assert_eq!(verdict, case.verdict, "{name}: {:?}", host.logs);
        assert_eq!(host.told.len(), case.told.len(), "{name}: {:?}", host.told);
        for (told, want) in host.told.iter().zip(case.told) {
            assert!(told.contains(want), "{name}: {told:?} lacks {want:?}");
        }
        let results: Vec<&str> = host
            .logs
            .iter()
            .filter(|(l, _)| *l != Level::Debug)
            .map(|(_, m)| m.as_str())
            .collect();
        assert_eq!(
            results.len(),
            1,
            "{name}: one line per sign-in: {results:?}"
        );
        assert!(
            results[0].starts_with("user=\"alice\" service=\"sudo\" result=")
                && results[0].contains(case.logged),
            "{name}: {:?} lacks {:?}",
            results[0],
            case.logged
        );
        assert_eq!(host.asked, usize::from(case.prompted), "{name}");
        assert_eq!(
            fake.sign_ins, case.sign_ins,
            "{name}: attempts sent to alohad"
        );
        assert!(
            !host.logged().contains(PIN),
            "{name}: the PIN in a log line"
        );
    }
}

#[test]
fn debug_lines_trace_every_step_and_never_the_pin() {
    let mut host = ScriptedHost::new("sudo", None);
    let mut fake = ScriptedDaemon::OPEN;
    let verdict = authenticate_with(&mut host, &Args::parse(["debug", "timeout=3"]), |_| {
        Ok(&mut fake)
    });
    assert_eq!(verdict, Verdict::Success);
    let debug: Vec<&str> = host
        .logs
        .iter()
        .filter(|(l, _)| *l == Level::Debug)
        .map(|(_, m)| m.as_str())
        .collect();
    for want in [
        "service=\"sudo\" arguments: socket=(default) config=(default) timeout=3s debug=true",
        "using a fake alohad",
        "registered key at /fake/public/alice.pub",
        "alohad status: enrolled=true backend=TPM 2.0 failed_attempts=4 gate=Open",
        "asking for the PIN",
        "reply: signed",
        "the signature verifies against /fake/public/alice.pub",
    ] {
        assert!(
            debug.iter().any(|l| l.contains(want)),
            "no debug line with {want:?}: {debug:#?}"
        );
    }
    assert!(!host.logged().contains(PIN));
}

#[test]
fn remote_sessions_are_ignored_before_anything_else() {
    for (service, rhost) in [("sshd", None), ("login", Some("203.0.113.9"))] {
        let mut h = ScriptedHost::new(service, rhost);
        let mut opened = false;
        let mut fake = ScriptedDaemon::OPEN;
        let verdict = authenticate_with(&mut h, &Args::parse([]), |_| {
            opened = true;
            Ok(&mut fake)
        });
        assert_eq!(verdict, Verdict::Ignore);
        assert!(!opened, "the daemon side is not even opened");
        assert_eq!(h.asked, 0);
    }
    let mut h = ScriptedHost::new("login", Some("203.0.113.9"));
    authenticate(&mut h, &Args::parse([]));
    assert!(
        h.logged().contains("remote session from 203.0.113.9"),
        "{:?}",
        h.logs
    );
}

#[test]
fn an_unreadable_config_falls_through() {
    let mut h = ScriptedHost::new("sudo", None);
    let args = Args::parse(["config=/nonexistent/aloha.toml"]);
    assert_eq!(authenticate(&mut h, &args), Verdict::Unavailable);
    assert_eq!(h.asked, 0);
    assert!(
        h.logged().contains("cannot read the config file"),
        "{:?}",
        h.logs
    );
}

/// The password vault: alohad's password goes to PAM_AUTHTOK only after a signature that
/// verifies, and is asked for only when the status says the user keeps one.
#[test]
fn the_vault_password_reaches_pam_authtok_only_after_a_verified_sign_in() {
    use crate::scripted::{Face, FaceReply, VAULT_PASSWORD};
    let run = |fake: &mut ScriptedDaemon, args: &[&str]| {
        let mut host = ScriptedHost::new("sudo", None);
        let verdict = authenticate_with(&mut host, &Args::parse(args.iter().copied()), |_| {
            Ok(&mut *fake)
        });
        (verdict, host)
    };

    let mut keeps = ScriptedDaemon {
        vault: true,
        ..ScriptedDaemon::OPEN
    };
    let (verdict, host) = run(&mut keeps, &[]);
    assert_eq!(verdict, Verdict::Success);
    assert_eq!(keeps.vault_asked, 1);
    assert_eq!(host.authtok.as_deref(), Some(VAULT_PASSWORD));
    assert!(
        host.logged().contains("PAM_AUTHTOK is set"),
        "{:?}",
        host.logs
    );
    assert!(
        !host.logged().contains(VAULT_PASSWORD),
        "the password in a log line"
    );

    // No vault: not even asked for.
    let mut none = ScriptedDaemon::OPEN;
    let (verdict, host) = run(&mut none, &[]);
    assert_eq!(verdict, Verdict::Success);
    assert_eq!(none.vault_asked, 0);
    assert_eq!(host.authtok, None);

    // An answer that does not verify hands nothing over, whatever came with it.
    let mut forged = ScriptedDaemon {
        vault: true,
        reply: Reply::SignedByAnotherKey,
        ..ScriptedDaemon::OPEN
    };
    let (verdict, host) = run(&mut forged, &[]);
    assert_eq!(verdict, Verdict::AuthErr);
    assert_eq!(host.authtok, None);

    // The face opens it too.
    let mut face = ScriptedDaemon {
        vault: true,
        face: Face::Answers(FaceReply::Signed),
        ..ScriptedDaemon::OPEN
    };
    let (verdict, host) = run(&mut face, &[]);
    assert_eq!(verdict, Verdict::Success);
    assert_eq!((face.face_sign_ins, face.sign_ins), (1, 0));
    assert_eq!(host.authtok.as_deref(), Some(VAULT_PASSWORD));
}
