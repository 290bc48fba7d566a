//! The system-bus shell: owns `org.aloha.Presence1`, queues each method call from the bus
//! loop and answers it on a worker thread (a question waits minutes for a person; others must
//! not wait behind it). Who is asking comes from the bus daemon (the caller's uid, from the
//! kernel's SO_PEERCRED), never from the message.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aloha::Secret;
use aloha::bus_calls::{Inbox, error_reply as error};
use aloha::client::{Client, ClientError};
use aloha::presence::{Ask, bus};
use aloha::protocol::{Gesture, Request, Response, UserStatus};
use aloha::untrusted::Untrusted;
use anyhow::{Context, Result, bail};
use dbus::Message;
use dbus::blocking::stdintf::org_freedesktop_dbus::RequestNameReply;
use dbus::blocking::{Connection, SyncConnection};
use dbus::channel::{MatchingReceiver, Sender};
use dbus::message::MatchRule;
use dbus::strings::{BusName, Path};
use tracing::{info, warn};

use crate::agents::{AgentAddress, Closed, Registry};
use crate::question::{self, Agent, AgentError, Alohad, Time, Unanswered};

/// Calls being worked on at once (questions, registrations); more are told to retry.
const MAX_WORKERS: usize = 64;
/// The bus daemon's own answers (who is calling).
const BUS_TIMEOUT: Duration = Duration::from_secs(10);
/// An agent ends its prompt when the entry's time is up and says so; this much longer is
/// waited for that answer before the agent counts as silent.
const AGENT_SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Settings {
    pub socket: PathBuf,
    /// Each step with alohad; a face attempt is bounded by alohad itself.
    pub alohad_timeout: Duration,
    pub face_timeout: Duration,
}

/// Serve until the bus goes away.
pub fn serve(settings: Settings) -> Result<()> {
    let conn = Arc::new(
        SyncConnection::new_system()
            .context("cannot connect to the system bus (is dbus running?)")?,
    );
    match conn
        .request_name(bus::NAME, false, true, true)
        .with_context(|| format!("the system bus refused {} to this process", bus::NAME))?
    {
        RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner => {}
        _ => bail!("another process already serves {}", bus::NAME),
    }
    let inbox = Inbox::default();
    conn.start_receive(MatchRule::new_method_call(), Box::new(inbox.collector()));
    info!(name = bus::NAME, "serving on the system bus");
    let shared = Arc::new(Shared {
        conn: conn.clone(),
        registry: Registry::default(),
        settings,
        workers: AtomicUsize::new(0),
    });
    loop {
        // libdbus writes a worker's queued reply only when this loop turns: while any worker
        // runs, it turns often (an idle service sleeps).
        let turn = if shared.workers.load(Ordering::SeqCst) > 0 {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(3600)
        };
        conn.process(turn)
            .context("the system bus connection failed")?;
        for call in inbox.take() {
            dispatch(&shared, call);
        }
    }
}

struct Shared {
    conn: Arc<SyncConnection>,
    registry: Registry,
    settings: Settings,
    workers: AtomicUsize,
}

impl Shared {
    fn send(&self, call: &Message, reply: Message) {
        if !call.get_no_reply() && self.conn.send(reply).is_err() {
            warn!("could not send a reply on the system bus");
        }
    }
}

fn dispatch(shared: &Arc<Shared>, call: Message) {
    let ours = call.path().is_some_and(|p| &*p == bus::PATH)
        && call.interface().is_some_and(|i| &*i == bus::INTERFACE);
    let member = call.member().map(|m| m.to_string()).unwrap_or_default();
    let Some(sender) = call.sender().map(|s| s.to_string()) else {
        return;
    };
    if !ours
        || !matches!(
            member.as_str(),
            "Verify" | "RegisterAgent" | "UnregisterAgent"
        )
    {
        let reply = error(
            &call,
            "org.freedesktop.DBus.Error.UnknownMethod",
            &format!("{} has no such method", bus::NAME),
        );
        shared.send(&call, reply);
        return;
    }
    if shared.workers.fetch_add(1, Ordering::SeqCst) >= MAX_WORKERS {
        shared.workers.fetch_sub(1, Ordering::SeqCst);
        let reply = error(
            &call,
            bus::error::BUSY,
            "too many questions at once; try again",
        );
        shared.send(&call, reply);
        return;
    }
    let worker = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("question".into())
        .spawn(move || {
            let reply = work(&worker, &call, &member, &sender);
            worker.send(&call, reply);
            worker.workers.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        shared.workers.fetch_sub(1, Ordering::SeqCst);
        warn!(error = %e, "cannot start a worker thread");
    }
}

/// One call, answered. Outgoing calls (the bus daemon, the agent) go on a private connection:
/// the shared one is read by the bus loop only.
fn work(shared: &Shared, call: &Message, member: &str, sender: &str) -> Message {
    let bus = match Connection::new_system() {
        Ok(bus) => bus,
        Err(e) => return error(call, bus::error::UNAVAILABLE, &format!("system bus: {e}")),
    };
    let uid = match caller_uid(&bus, sender) {
        Ok(uid) => uid,
        Err(e) => return error(call, bus::error::UNAVAILABLE, &e),
    };
    match member {
        "RegisterAgent" | "UnregisterAgent" => {
            let Ok(path) = call.read1::<Path>() else {
                return error(
                    call,
                    bus::error::INVALID,
                    "expected the agent's object path",
                );
            };
            let address = AgentAddress {
                bus_name: sender.to_string(),
                path: path.to_string(),
            };
            if member == "RegisterAgent" {
                info!(uid, agent = %address.bus_name, "presence agent registered");
                shared.registry.register(uid, address);
            } else if shared.registry.unregister(uid, &address) {
                info!(uid, agent = %address.bus_name, "presence agent unregistered");
            }
            call.method_return()
        }
        _ => verify(shared, &bus, call, sender, uid),
    }
}

fn verify(shared: &Shared, bus: &Connection, call: &Message, sender: &str, uid: u32) -> Message {
    let ask = match call.read2::<String, Vec<u8>>() {
        Ok((reason, challenge)) => Ask::new(reason, challenge),
        Err(_) => {
            return error(
                call,
                bus::error::INVALID,
                "expected (s reason, ay challenge)",
            );
        }
    };
    let ask = match ask {
        Ok(ask) => ask,
        Err(e) => return error(call, bus::error::INVALID, &e.to_string()),
    };
    let user = match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => {
            return error(
                call,
                bus::error::REFUSED,
                &format!("uid {uid} has no user name, so it has no Aloha key"),
            );
        }
    };
    let _turn = match shared.registry.open(uid) {
        Ok(turn) => turn,
        Err(Closed::Yours) => {
            return error(
                call,
                bus::error::BUSY,
                "another question for you is still open; answer or cancel it first",
            );
        }
        Err(Closed::Full) => {
            return error(
                call,
                bus::error::BUSY,
                "too many questions at once; try again",
            );
        }
    };
    let application = application(bus, sender);
    let address = shared.registry.agent(uid);
    let mut agent = address.as_ref().and_then(|a| BusAgent::new(bus, a));
    let mut alohad = SocketAlohad(&shared.settings);
    let time = Time {
        face_timeout: shared.settings.face_timeout,
        deadline: Instant::now() + bus::ANSWER_WITHIN,
        now: &Instant::now,
    };
    let result = question::answer(
        &mut alohad,
        agent.as_mut().map(|a| a as &mut dyn Agent),
        &user,
        &application,
        &ask,
        &time,
    );
    if let (Err(Unanswered::Agent(AgentError::Gone)), Some(address)) = (&result, &address) {
        shared.registry.unregister(uid, address);
    }
    // The reason and the program name come from the caller: quoted and cut short.
    info!(
        user = %Untrusted(&user),
        uid,
        application = %Untrusted(&application),
        reason = %Untrusted(ask.reason()),
        result = match &result {
            Ok(a) => a.factor.name().to_string(),
            Err(e) => format!("{e:?}"),
        },
        "presence question"
    );
    match result {
        Ok(answer) => call
            .method_return()
            .append2(answer.signature, answer.factor.name()),
        Err(e) => error(call, e.bus_error(), &e.to_string()),
    }
}

fn dbus_daemon(bus: &Connection) -> dbus::blocking::Proxy<'_, &Connection> {
    bus.with_proxy("org.freedesktop.DBus", "/org/freedesktop/DBus", BUS_TIMEOUT)
}

fn caller_uid(bus: &Connection, sender: &str) -> Result<u32, String> {
    dbus_daemon(bus)
        .method_call::<(u32,), _, _, _>("org.freedesktop.DBus", "GetConnectionUnixUser", (sender,))
        .map(|(uid,)| uid)
        .map_err(|e| format!("the bus daemon cannot say who is asking: {e}"))
}

/// The asking program as the person is shown it: its name and pid. For display only; no
/// decision rests on it (a pid can be reused), only on the uid.
fn application(bus: &Connection, sender: &str) -> String {
    let pid = dbus_daemon(bus)
        .method_call::<(u32,), _, _, _>(
            "org.freedesktop.DBus",
            "GetConnectionUnixProcessID",
            (sender,),
        )
        .map(|(pid,)| pid);
    match pid {
        Ok(pid) => {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm: String = comm
                .trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(32)
                .collect();
            if comm.is_empty() {
                format!("pid {pid}")
            } else {
                format!("{comm} (pid {pid})")
            }
        }
        Err(_) => format!("an application ({sender})"),
    }
}

/// alohad over its socket, one connection per call.
struct SocketAlohad<'a>(&'a Settings);

impl SocketAlohad<'_> {
    fn call(&self, request: &Request) -> Result<Response, ClientError> {
        Client::connect(&self.0.socket, self.0.alohad_timeout, "aloha-presence")?.call(request)
    }
}

impl Alohad for SocketAlohad<'_> {
    fn status(&mut self, user: &str) -> Result<UserStatus, ClientError> {
        match self.call(&Request::Status { user: user.into() })? {
            Response::Status(status) => Ok(status),
            other => Err(ClientError::Malformed(format!(
                "expected a status, got {other:?}"
            ))),
        }
    }

    fn presence(
        &mut self,
        user: &str,
        ask: &Ask,
        gesture: Gesture,
    ) -> Result<Vec<u8>, ClientError> {
        let request = Request::Presence {
            user: user.into(),
            ask: ask.clone(),
            gesture,
        };
        match self.call(&request)? {
            Response::Signed { signature, .. } => Ok(signature),
            other => Err(ClientError::Malformed(format!(
                "expected a signature, got {other:?}"
            ))),
        }
    }
}

/// The user's agent, over the bus.
struct BusAgent<'a> {
    proxy: dbus::blocking::Proxy<'a, &'a Connection>,
}

impl<'a> BusAgent<'a> {
    fn new(bus: &'a Connection, address: &AgentAddress) -> Option<BusAgent<'a>> {
        let name = BusName::new(address.bus_name.clone()).ok()?;
        let path = Path::new(address.path.clone()).ok()?;
        Some(BusAgent {
            proxy: bus.with_proxy(name, path, question::ENTRY_TIMEOUT),
        })
    }
}

impl Agent for BusAgent<'_> {
    fn face_attempt(&mut self, reason: &str, application: &str) {
        let proxy = &self.proxy;
        let Ok(call) = Message::new_method_call(
            proxy.destination.clone(),
            proxy.path.clone(),
            bus::AGENT_INTERFACE,
            "FaceAttempt",
        ) else {
            return;
        };
        let mut call = call.append2(reason, application);
        call.set_no_reply(true);
        // Best effort: an agent that misses it still gets the PIN question.
        let _ = proxy.connection.send(call);
    }

    fn ask_pin(
        &mut self,
        reason: &str,
        application: &str,
        note: &str,
        within: Duration,
    ) -> Result<Option<Secret>, AgentError> {
        self.proxy.timeout = within + AGENT_SLACK;
        let seconds = u32::try_from(within.as_secs()).unwrap_or(u32::MAX);
        let reply = self.proxy.method_call::<(String,), _, _, _>(
            bus::AGENT_INTERFACE,
            "AskPin",
            (reason, application, note, seconds),
        );
        match reply {
            Ok((pin,)) => Ok(Some(Secret::from(pin))),
            Err(e) => match e.name() {
                Some(name) if name == bus::error::CANCELLED => Ok(None),
                Some(name) if name == bus::error::TIMED_OUT => Err(AgentError::NoAnswer),
                Some(
                    "org.freedesktop.DBus.Error.ServiceUnknown"
                    | "org.freedesktop.DBus.Error.NameHasNoOwner"
                    | "org.freedesktop.DBus.Error.UnknownObject"
                    | "org.freedesktop.DBus.Error.UnknownMethod"
                    | "org.freedesktop.DBus.Error.Disconnected",
                ) => Err(AgentError::Gone),
                Some(
                    "org.freedesktop.DBus.Error.NoReply" | "org.freedesktop.DBus.Error.Timeout",
                ) => Err(AgentError::NoAnswer),
                _ => Err(AgentError::Failed(
                    e.message().unwrap_or("no reason given").into(),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbus::strings::ErrorName;

    #[test]
    fn every_error_name_is_a_valid_bus_name() {
        for name in [
            bus::error::INVALID,
            bus::error::NOT_ENROLLED,
            bus::error::NO_AGENT,
            bus::error::CANCELLED,
            bus::error::TIMED_OUT,
            bus::error::REFUSED,
            bus::error::BUSY,
            bus::error::UNAVAILABLE,
            "org.freedesktop.DBus.Error.UnknownMethod",
        ] {
            assert!(ErrorName::new(name).is_ok(), "{name}");
        }
        for name in [bus::NAME, bus::INTERFACE, bus::AGENT_INTERFACE] {
            assert!(dbus::strings::Interface::new(name).is_ok(), "{name}");
        }
        for path in [bus::PATH, bus::AGENT_PATH] {
            assert!(Path::new(path).is_ok(), "{path}");
        }
    }
}
