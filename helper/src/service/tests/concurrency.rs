//! Attempts at once: per-user serialization, software vaults side by side within their
//! Argon2id permits, and a connection that never idles still ends at its lifetime.

use super::*;
use crate::server::{Ended, Lifecycle, Limits};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

#[test]
fn concurrent_attempts_never_exceed_the_limit() {
    let config = Config {
        lockout: LockoutPolicy {
            free_attempts: 2,
            delay_seconds: vec![0],
            max_attempts: 5,
        },
        ..Config::default()
    };
    let f = Arc::new(fixture_with(config, false));
    f.set(ROOT, "alice", None, PIN).unwrap();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err().code)
        })
        .collect();
    let codes: Vec<ErrorCode> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == ErrorCode::WrongPin).count(),
        5,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == ErrorCode::Locked).count(),
        11,
        "{codes:?}"
    );
    assert_eq!(f.status("alice").failed_attempts, 5);
}

/// Callers inside a vault at once: each entering caller waits (up to `wait`) for a second one
/// and records whether it met one (`met`) or stayed alone (`alone`).
#[derive(Clone, Default)]
struct Meeting {
    inside: Arc<(Mutex<usize>, std::sync::Condvar)>,
    met: Arc<AtomicU64>,
    alone: Arc<AtomicU64>,
}

impl Meeting {
    /// A vault whose PIN-judging operations first wait here; `leave`: count down on the way out.
    fn vault(&self, wait: std::time::Duration, leave: bool) -> Scripted {
        let meeting = self.clone();
        Scripted::vault(
            Box::new(move || {
                let (count, cv) = &*meeting.inside;
                let mut n = lock(count);
                *n += 1;
                cv.notify_all();
                let (mut n, waited) = cv.wait_timeout_while(n, wait, |n| *n < 2).unwrap();
                if waited.timed_out() {
                    meeting.alone.fetch_add(1, Ordering::SeqCst);
                } else {
                    meeting.met.fetch_add(1, Ordering::SeqCst);
                }
                if leave {
                    *n -= 1;
                }
                Ok(())
            }),
            Box::new(|_| Ok(())),
        )
    }
}

fn enrol_alice_and_bob(service: &Service) {
    for user in ["alice", "bob"] {
        let r = service.handle_quietly(
            &ROOT,
            Request::PinSet {
                user: user.into(),
                password: None,
                pin: Secret::new(PIN),
            },
        );
        assert!(matches!(r, Response::Done { .. }), "{r:?}");
    }
}

/// Every caller signs in with the right PIN, all started together; each must get a signature.
fn sign_in_together(service: &Arc<Service>, callers: &[(Caller, &'static str)]) {
    let start = Arc::new(std::sync::Barrier::new(callers.len()));
    let threads: Vec<_> = callers
        .iter()
        .map(|&(caller, user)| {
            let (service, start) = (service.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                service.handle_quietly(
                    &caller,
                    Request::SignIn {
                        user: user.into(),
                        service: "t".into(),
                        nonce: Nonce::random().unwrap(),
                        pin: Secret::new(PIN),
                        vault: false,
                    },
                )
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert!(matches!(r, Response::Signed { .. }), "{r:?}");
    }
}

#[test]
fn software_vault_sign_ins_of_different_users_run_side_by_side() {
    let dir = TempDir::new();
    let meeting = Meeting::default();
    let m2 = meeting.clone();
    // Each waits up to 5 s for the other inside: with two permits both get in.
    let service = software_service(&dir, 2, move || {
        m2.vault(std::time::Duration::from_secs(5), false)
    });
    enrol_alice_and_bob(&service);
    sign_in_together(&service, &[(ALICE, "alice"), (BOB, "bob")]);
    assert_eq!(
        meeting.met.load(Ordering::SeqCst),
        2,
        "both were inside the vault at once"
    );
}

#[test]
fn software_vault_runs_are_bounded_by_the_permits() {
    let dir = TempDir::new();
    let meeting = Meeting::default();
    let m2 = meeting.clone();
    // The other callers are already queued (they started together): without the permit one of
    // them would be in the vault well within each 300 ms wait.
    let service = software_service(&dir, 1, move || {
        m2.vault(std::time::Duration::from_millis(300), true)
    });
    enrol_alice_and_bob(&service);
    sign_in_together(
        &service,
        &[
            (ALICE, "alice"),
            (BOB, "bob"),
            (ALICE, "alice"),
            (BOB, "bob"),
        ],
    );
    assert_eq!(
        meeting.met.load(Ordering::SeqCst),
        0,
        "two vault runs at once"
    );
    assert_eq!(
        meeting.alone.load(Ordering::SeqCst),
        4,
        "every run waited alone"
    );
}

#[test]
fn a_busy_connection_still_ends_at_its_lifetime() {
    use aloha::frame;
    let f = fixture();
    let stop = Stop::new();
    let limits = crate::server::Limits {
        // Far beyond the test, so that only the lifetime can end the connection.
        io_timeout: Duration::from_secs(60),
        max_connections: 8,
        max_connections_per_uid: 2,
        connection_lifetime: Duration::from_millis(600),
    };
    let (socket, server) = stop.serve(&f, limits, None);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let mut ask = |req: &Request| ask(&mut stream, req);
    assert!(matches!(ask(&hello()), Ok(Response::Hello { .. })));
    let mut answered = 0;
    let mut ended = None;
    // A request every 100 ms never lets one frame deadline pass; the lifetime (600 ms) still
    // ends it. 100 requests are far more than it allows (a bound on the loop, not on time).
    for _ in 0..100 {
        match ask(&Request::Status {
            user: "alice".into(),
        }) {
            Ok(_) => answered += 1,
            Err(e) => {
                ended = Some(e);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered >= 1, "served before the lifetime ended");
    // alohad closed it: not our own deadline running out, nor a request left unanswered.
    match ended {
        Some(frame::FrameError::Closed) => {}
        Some(frame::FrameError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) => {}
        other => panic!("the connection did not end by being closed: {other:?}"),
    }
    stop.now();
    assert_eq!(server.join().unwrap().unwrap(), Ended::Shutdown);
}

fn hello() -> Request {
    Request::Hello {
        version: aloha::protocol::PROTOCOL_VERSION,
        client: "test".into(),
    }
}

fn ask(
    stream: &mut std::os::unix::net::UnixStream,
    req: &Request,
) -> Result<Response, aloha::frame::FrameError> {
    use aloha::frame;
    let deadline = Instant::now() + Duration::from_secs(5);
    frame::write_frame(stream, &aloha::protocol::encode(req).unwrap(), deadline)?;
    let bytes = frame::read_frame(stream, deadline, frame::MAX_FRAME_LEN)?;
    Ok(aloha::protocol::decode(&bytes).unwrap())
}

/// The accept loop's shutdown flag and wake-up pipe, as alohad's signal handler drives them.
struct Stop {
    flag: &'static AtomicBool,
    read: &'static OwnedFd,
    write: OwnedFd,
}

impl Stop {
    fn new() -> Stop {
        let (read, write) = nix::unistd::pipe().unwrap();
        Stop {
            flag: Box::leak(Box::new(AtomicBool::new(false))),
            read: Box::leak(Box::new(read)),
            write,
        }
    }

    /// The accept loop over a fresh state directory of `f`, on a socket in `f`'s directory
    /// (returned), in a thread of its own.
    fn serve(
        &self,
        f: &Fixture,
        limits: Limits,
        idle_exit: Option<Duration>,
    ) -> (
        std::path::PathBuf,
        std::thread::JoinHandle<std::io::Result<Ended>>,
    ) {
        let socket = f.dir().join("alohad.sock");
        let service = Arc::new(f.rebuild(&f.dir().join("state"), Config::default(), false));
        let listener = crate::server::bind(&socket).unwrap();
        let (flag, read) = (self.flag, self.read);
        let server = std::thread::spawn(move || {
            let life = Lifecycle {
                shutdown: flag,
                wake: read.as_fd(),
                idle_exit,
            };
            crate::server::serve(listener, service, limits, &life)
        });
        (socket, server)
    }

    /// What the signal handler does: the flag, then a byte down the pipe.
    fn now(&self) {
        self.flag.store(true, Ordering::SeqCst);
        nix::unistd::write(&self.write, b"x").unwrap();
    }
}

fn limits() -> Limits {
    Limits {
        io_timeout: Duration::from_secs(5),
        max_connections: 8,
        max_connections_per_uid: 2,
        connection_lifetime: Duration::from_secs(60),
    }
}

/// Waits for `server` to end, at most `limit` (a bound on the test, not a timing claim).
fn joined(
    server: std::thread::JoinHandle<std::io::Result<Ended>>,
    limit: Duration,
) -> Option<Ended> {
    let until = Instant::now() + limit;
    while !server.is_finished() {
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server.join().unwrap().unwrap())
}

/// A signal wakes the loop at once although it sleeps in poll(2) without a timeout (no idle
/// exit, nobody waiting in line: an idle alohad takes no CPU).
#[test]
fn a_stop_wakes_an_idle_loop_that_sleeps_without_a_timeout() {
    let f = fixture();
    let stop = Stop::new();
    let (socket, server) = stop.serve(&f, limits(), None);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    assert!(matches!(
        ask(&mut stream, &hello()),
        Ok(Response::Hello { .. })
    ));
    drop(stream);
    stop.now();
    assert_eq!(
        joined(server, Duration::from_secs(30)),
        Some(Ended::Shutdown)
    );
}

/// Socket activation: after the idle period without a client the loop ends by itself (systemd
/// keeps the socket and starts alohad again); a client being served holds it off.
#[test]
fn the_loop_ends_after_the_idle_period_but_not_while_a_client_is_served() {
    let f = fixture();
    let stop = Stop::new();
    let idle = Duration::from_millis(300);
    let (socket, server) = stop.serve(&f, limits(), Some(idle));
    // A client that stays connected (and asks now and then) for several idle periods.
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    assert!(matches!(
        ask(&mut stream, &hello()),
        Ok(Response::Hello { .. })
    ));
    for _ in 0..6 {
        std::thread::sleep(idle / 2);
        assert!(!server.is_finished(), "ended while a client was connected");
        let status = ask(
            &mut stream,
            &Request::Status {
                user: "alice".into(),
            },
        );
        assert!(status.is_ok(), "{status:?}");
    }
    drop(stream);
    assert_eq!(joined(server, Duration::from_secs(30)), Some(Ended::Idle));
}
