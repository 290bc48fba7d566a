//! "Is the user here?" end to end on a private system bus: a real dbus-daemon with Debian's
//! default system policy and Aloha's own policy file, aloha-presence as root, a real alohad,
//! the user's terminal agent (`aloha presence agent`) and the example application
//! (`aloha presence ask`), each as the processes they are in a real system. Also what another
//! process on the bus can do to that agent and to the service (nothing useful).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aloha_tests::build::{artifact, workspace_root};
use aloha_tests::daemon::{Backend, Daemon, Options, Run, run_with_stdin};

const NOBODY: u32 = 65534;
const PIN: &str = "482915";
const WRONG: &str = "739164";

/// A child killed (by pid) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Bus {
    address: String,
    _daemon: Process,
}

/// dbus-daemon as a system bus: Debian's default system policy (every method call denied
/// unless a service's file allows it) plus packaging/dbus/org.aloha.Presence1.conf.
fn system_bus(dir: &Path) -> Bus {
    let socket = dir.join("system_bus_socket");
    let policy = workspace_root().join("packaging/dbus/org.aloha.Presence1.conf");
    let config = format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
        socket = socket.display(),
        policy = policy.display()
    );
    let path = dir.join("bus.conf");
    fs::write(&path, config).unwrap();
    let daemon = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", path.display()))
        .arg("--nofork")
        .arg("--nopidfile")
        .stdout(Stdio::null())
        .spawn()
        .expect("dbus-daemon (scripts/deps installs dbus)");
    let daemon = Process(daemon);
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "dbus-daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Bus {
        address: format!("unix:path={}", socket.display()),
        _daemon: daemon,
    }
}

struct World {
    daemon: Daemon,
    bus: Bus,
    service: Option<Process>,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let daemon = Daemon::start(Options::new(Backend::Software));
        daemon
            .aloha(
                &["pin", "set", "--user", "nobody", "--pin-stdin"],
                &format!("{PIN}\n"),
            )
            .ok();
        let dir = tempfile::Builder::new()
            .prefix("aloha-bus-")
            .tempdir()
            .unwrap();
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let bus = system_bus(dir.path());
        let mut world = World {
            daemon,
            bus,
            service: None,
            dir,
        };
        world.start_service();
        world
    }

    /// aloha-presence as root on this bus; returns once it owns its name.
    fn start_service(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("presence.log"))
            .unwrap();
        let service = Command::new(artifact("aloha-presence"))
            .arg("--config")
            .arg(self.daemon.config_path())
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus.address)
            .stderr(log)
            .spawn()
            .unwrap();
        self.service = Some(Process(service));
        let started = Instant::now();
        while !self
            .dbus_send(
                None,
                &[
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.aloha.Presence1",
                ],
            )
            .stdout
            .contains("true")
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "aloha-presence did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn as_user(&self, uid: Option<u32>, program: &Path) -> Command {
        let mut cmd = match uid {
            None => Command::new(program),
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(program);
                c
            }
        };
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus.address);
        cmd
    }

    fn aloha(&self, uid: Option<u32>, args: &[&str]) -> Run {
        let mut cmd = self.as_user(uid, &artifact("aloha"));
        cmd.arg("--config")
            .arg(self.daemon.config_path())
            .args(args);
        run_with_stdin(cmd, "")
    }

    fn dbus_send(&self, uid: Option<u32>, args: &[&str]) -> Run {
        let mut cmd = self.as_user(uid, &PathBuf::from("/usr/bin/dbus-send"));
        cmd.args(["--system", "--print-reply", "--reply-timeout=20000"])
            .args(args);
        run_with_stdin(cmd, "")
    }

    /// Every connection's unique name on the bus (the service, the agent, dbus-send's own).
    fn connections(&self) -> Vec<String> {
        let names = self.dbus_send(
            None,
            &[
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.ListNames",
            ],
        );
        let unique: Vec<String> = names
            .stdout
            .split('"')
            .filter(|s| s.starts_with(":1."))
            .map(String::from)
            .collect();
        assert!(unique.len() >= 3, "{names:#?}");
        unique
    }

    /// nobody's terminal agent, PINs fed on its stdin; returns once it is registered.
    fn agent(&self) -> Agent {
        let mut cmd = self.as_user(Some(NOBODY), &artifact("aloha"));
        cmd.arg("--config")
            .arg(self.daemon.config_path())
            .args(["presence", "agent", "--pin-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (lines, rx) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let agent = Agent {
            stdin,
            lines: rx,
            _child: Process(child),
        };
        agent.wait_for("Presence agent for nobody");
        agent
    }
}

struct Agent {
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    _child: Process,
}

impl Agent {
    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Every line the agent printed until one containing `needle`.
    fn wait_for(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("the agent never printed {needle:?}; it printed {seen:#?}"),
            }
        }
    }
}

#[test]
fn an_application_learns_the_user_is_here_from_a_signature_it_checks_itself() {
    let w = World::new();
    let mut agent = w.agent();
    // A mistyped PIN first: the agent is asked again, and says why.
    agent.type_line(WRONG);
    agent.type_line(PIN);
    let ask = w.aloha(Some(NOBODY), &["presence", "ask", "Unlock the test vault"]);
    ask.ok();
    assert!(
        ask.stdout.contains("nobody is here (answered by pin)"),
        "{ask:#?}"
    );
    let shown = agent.wait_for("Wrong PIN");
    assert!(
        shown.iter().any(
            |l| l.contains("asks whether you are here: \"Unlock the test vault\"")
                && l.contains("aloha (pid ")
        ),
        "the agent shows the reason and the asking program: {shown:#?}"
    );
    // The wrong PIN counted in alohad, and the right one cleared it.
    let log = w.daemon.log();
    assert!(
        log.contains("aloha-presence"),
        "alohad logged the attempts: {log}"
    );
    assert!(
        !log.contains(PIN) && !log.contains(WRONG),
        "no PIN in alohad's log"
    );

    // Enter alone declines: the application hears "declined", alohad sees no attempt.
    agent.type_line("");
    w.aloha(Some(NOBODY), &["presence", "ask", "Once more"])
        .refused("declined");
}

#[test]
fn without_an_agent_nothing_is_asked_and_the_application_is_told_what_to_do() {
    let w = World::new();
    w.aloha(Some(NOBODY), &["presence", "ask", "Unlock the test vault"])
        .refused("aloha presence agent");
    // root has no PIN here: the example application says so before asking, and the service,
    // asked directly, says so instead of prompting anyone.
    w.aloha(None, &["presence", "ask", "x"])
        .refused("root has no Aloha PIN");
    let challenge = format!("array:byte:{}", vec!["7"; 32].join(","));
    let direct = w.dbus_send(
        None,
        &[
            "--dest=org.aloha.Presence1",
            "/org/aloha/Presence1",
            "org.aloha.Presence1.Verify",
            "string:x",
            &challenge,
        ],
    );
    assert!(
        direct
            .stderr
            .contains("org.aloha.Presence1.Error.NotEnrolled")
            && direct.stderr.contains("aloha pin set"),
        "{direct:#?}"
    );
}

#[test]
fn the_bus_keeps_other_processes_away_from_the_agent_and_the_questions_bounded() {
    let w = World::new();
    let mut agent = w.agent();
    agent.type_line(PIN);
    // Every connection on the bus, asked for a PIN by the user's own uid and by another
    // (daemon, uid 1): the bus policy lets only root call an agent (root is trusted: it could
    // read the terminal anyway), so the PIN line typed for the real question stays unread.
    let unique = w.connections();
    for name in &unique {
        for uid in [Some(NOBODY), Some(1)] {
            let fished = w.dbus_send(
                uid,
                &[
                    &format!("--dest={name}"),
                    "/org/aloha/PresenceAgent1",
                    "org.aloha.PresenceAgent1.AskPin",
                    "string:Phish",
                    "string:evil",
                    "string:",
                    "uint32:60",
                ],
            );
            assert_ne!(fished.code, 0, "{name} answered {uid:?}: {fished:#?}");
            assert!(!fished.stdout.contains(PIN), "{fished:#?}");
        }
    }
    // A malformed question is refused before anything is asked.
    let bad = w.dbus_send(
        Some(NOBODY),
        &[
            "--dest=org.aloha.Presence1",
            "/org/aloha/Presence1",
            "org.aloha.Presence1.Verify",
            "string:x",
            "array:byte:1,2,3",
        ],
    );
    assert!(
        bad.stderr.contains("org.aloha.Presence1.Error.Invalid"),
        "{bad:#?}"
    );
    let multi = w.dbus_send(
        Some(NOBODY),
        &[
            "--dest=org.aloha.Presence1",
            "/org/aloha/Presence1",
            "org.aloha.Presence1.Verify",
            "string:fine\nPIN accepted",
            &format!("array:byte:{}", vec!["1"; 32].join(",")),
        ],
    );
    assert!(
        multi.stderr.contains("org.aloha.Presence1.Error.Invalid"),
        "{multi:#?}"
    );
    // The PIN typed for the agent is still there for the real question.
    w.aloha(Some(NOBODY), &["presence", "ask", "Unlock the test vault"])
        .ok();
}

#[test]
fn an_agent_shows_a_face_attempt_and_takes_its_prompt_away_when_the_time_is_up() {
    let w = World::new();
    let mut agent = w.agent();
    // Called as aloha-presence calls it (root), on every connection (the agent's is one).
    let to_every_connection = |call: &[&str]| -> Vec<Run> {
        w.connections()
            .iter()
            .map(|name| {
                let dest = format!("--dest={name}");
                let mut args = vec![dest.as_str(), "/org/aloha/PresenceAgent1"];
                args.extend_from_slice(call);
                w.dbus_send(None, &args)
            })
            .collect()
    };
    // The face is being tried: the person is told to look at the camera.
    to_every_connection(&[
        "org.aloha.PresenceAgent1.FaceAttempt",
        "string:Unlock the face vault",
        "string:test",
    ]);
    let shown = agent.wait_for("Look at the camera");
    assert!(
        shown
            .iter()
            .any(|l| l.contains("\"Unlock the face vault\"")),
        "{shown:#?}"
    );
    // A PIN within 1 s, and nothing is typed: the agent answers TimedOut instead of leaving a
    // prompt that would take a later line.
    let answers = to_every_connection(&[
        "org.aloha.PresenceAgent1.AskPin",
        "string:Nobody is here",
        "string:test",
        "string:",
        "uint32:1",
    ]);
    assert!(
        answers
            .iter()
            .any(|a| a.stderr.contains("org.aloha.Presence1.Error.TimedOut")),
        "{answers:#?}"
    );
    agent.wait_for("No PIN within 1 s");
    // The agent goes on: the next question gets the next line typed.
    agent.type_line(PIN);
    w.aloha(Some(NOBODY), &["presence", "ask", "After a timeout"])
        .ok();
}

#[test]
fn an_agent_registers_again_when_the_service_restarts() {
    let mut w = World::new();
    let mut agent = w.agent();
    // What a package upgrade does: the old service goes, a new one (knowing no agent) comes.
    w.service = None;
    w.start_service();
    agent.wait_for("registered again");
    agent.type_line(PIN);
    w.aloha(Some(NOBODY), &["presence", "ask", "After an upgrade"])
        .ok();
}
