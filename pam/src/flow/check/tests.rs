use std::path::Path;
use std::time::Duration;

use super::super::ask::min_sign_in_time;

use super::*;
use crate::args::DEFAULT_TIMEOUT;
use crate::scripted::{ScriptedDaemon, ScriptedHost};

#[test]
fn the_sign_in_keeps_a_minimum_of_the_timeout() {
    assert_eq!(min_sign_in_time(DEFAULT_TIMEOUT), Duration::from_secs(2));
    assert_eq!(
        min_sign_in_time(Duration::from_secs(3)),
        Duration::from_millis(1500)
    );
}

#[test]
fn locality() {
    for local in ["", "localhost", "127.0.0.1", "127.0.1.1", "::1", "[::1]"] {
        assert!(is_local(local), "{local}");
    }
    for remote in ["10.0.0.7", "example.org", "2001:db8::1"] {
        assert!(!is_local(remote), "{remote}");
    }
    let own = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert!(is_local(&own));
}

/// A check that lets the attempt go on has asked, told and sent nothing, and has not logged
/// the attempt's result line: the steps after it (a prompt, or another way to prove) start
/// from a clean slate.
#[test]
fn a_ready_attempt_has_asked_told_and_sent_nothing() {
    let mut host = ScriptedHost::new("sudo", None);
    let mut daemon = ScriptedDaemon::OPEN;
    let ControlFlow::Continue(ready) = run(&mut host, &Args::parse([]), |_| Ok(&mut daemon)) else {
        panic!("the check ended the attempt: {:?}", host.logs);
    };
    assert_eq!(
        (ready.attempt.user.as_str(), ready.attempt.service.as_str()),
        ("alice", "sudo")
    );
    assert_eq!(ready.key_path, Path::new("/fake/public/alice.pub"));
    drop(ready);
    assert_eq!(host.asked, 0);
    assert!(host.told.is_empty(), "{:?}", host.told);
    assert_eq!(daemon.sign_ins, 0);
    assert!(
        host.logs.iter().all(|(_, line)| !line.contains("result=")),
        "{:?}",
        host.logs
    );
}
