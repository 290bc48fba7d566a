//! `aloha presence`: a terminal agent that answers applications' "is the user here?"
//! questions with the PIN (`agent`), and the example application (`ask`) that asks one through
//! `org.aloha.Presence1` and checks the answer against the registered public key itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aloha::bus_calls::{Inbox, error_reply as error};
use aloha::presence::{Ask, bus};
use aloha::registry;
use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use dbus::Message;
use dbus::blocking::Connection;
use dbus::channel::{MatchingReceiver, Sender};
use dbus::message::MatchRule;
use dbus::strings::Path;

use super::prompt::Source;
use super::{Ctx, Failure, say};

/// How long `ask` waits: the question's own time, and a minute for the last step with alohad.
const ASK_TIMEOUT: Duration = Duration::from_secs(bus::ANSWER_WITHIN.as_secs() + 60);
const BUS_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum PresenceCommand {
    /// Answer applications that ask whether you are here: shows each question and asks for
    /// your PIN (Enter alone declines). Runs until stopped.
    Agent(AgentArgs),
    /// Ask whether you are here, as an application would, and check the answer: exit status 0
    /// only for a signature by your key over this question.
    Ask {
        /// What the person is shown (one line).
        reason: String,
    },
}

#[derive(Args)]
pub struct AgentArgs {
    /// Read each PIN from standard input, one per line (scripts and tests).
    #[arg(long)]
    pin_stdin: bool,
}

pub fn run(ctx: &Ctx, command: PresenceCommand) -> Result<(), Failure> {
    match command {
        PresenceCommand::Agent(args) => agent(ctx, &args),
        PresenceCommand::Ask { reason } => ask(ctx, reason),
    }
}

fn system_bus() -> Result<Connection, Failure> {
    Connection::new_system()
        .map_err(|e| Failure::Unreachable(anyhow!("cannot connect to the system bus: {e}")))
}

fn ask(ctx: &Ctx, reason: String) -> Result<(), Failure> {
    let user = ctx.user(None)?;
    let registered = registry::load(&ctx.config.daemon.state_dir, &user, None)
        .map_err(|e| Failure::Refused(e.into()))?;
    let mut challenge = vec![0u8; 32];
    getrandom::fill(&mut challenge).map_err(|e| anyhow!("no randomness for a challenge: {e}"))?;
    let question = Ask::new(reason, challenge).map_err(|e| Failure::Refused(e.into()))?;
    let conn = system_bus()?;
    let (signature, factor): (Vec<u8>, String) = conn
        .with_proxy(bus::NAME, bus::PATH, ASK_TIMEOUT)
        .method_call(
            bus::INTERFACE,
            "Verify",
            (question.reason(), question.challenge().to_vec()),
        )
        .map_err(|e| {
            let text = e.message().unwrap_or("no reason given").to_string();
            match e.name() {
                Some(bus::error::UNAVAILABLE)
                | Some("org.freedesktop.DBus.Error.ServiceUnknown") => {
                    Failure::Unreachable(anyhow!("{} cannot answer: {text}", bus::NAME))
                }
                _ => Failure::Refused(anyhow!("{user} was not confirmed: {text}")),
            }
        })?;
    question
        .verify(&registered.public_key, &user, &signature)
        .with_context(|| format!("the answer is not a signature by {user}'s key"))?;
    say(&format!(
        "{user} is here (answered by {factor}); the signature over this question verifies \
         against {user}'s registered key.\n"
    ));
    Ok(())
}

fn agent(ctx: &Ctx, args: &AgentArgs) -> Result<(), Failure> {
    let user = ctx.user(None)?;
    let conn = system_bus()?;
    let inbox = Inbox::default();
    conn.start_receive(MatchRule::new_method_call(), Box::new(inbox.collector()));
    // A restarted service (a package upgrade) has forgotten this agent: register again as
    // soon as the bus says the name has a new owner.
    let restarted = Arc::new(AtomicBool::new(false));
    let flag = restarted.clone();
    conn.add_match(
        MatchRule::new_signal("org.freedesktop.DBus", "NameOwnerChanged")
            .with_sender("org.freedesktop.DBus"),
        move |(name, _old, new): (String, String, String), _: &Connection, _: &Message| {
            if name == bus::NAME && !new.is_empty() {
                flag.store(true, Ordering::SeqCst);
            }
            true
        },
    )
    .map_err(|e| Failure::Unreachable(anyhow!("cannot follow {} on the bus: {e}", bus::NAME)))?;
    register(&conn)?;
    eprintln!(
        "Presence agent for {user}: applications that ask whether you are here are shown \
         here. Ctrl-C stops it."
    );
    let mut source = Source::new(args.pin_stdin);
    loop {
        conn.process(Duration::from_secs(3600))
            .map_err(|e| Failure::Unreachable(anyhow!("the system bus connection failed: {e}")))?;
        if restarted.swap(false, Ordering::SeqCst) {
            register(&conn)?;
            eprintln!("{} restarted; this agent is registered again.", bus::NAME);
        }
        for call in inbox.take() {
            let reply = answer(&conn, &mut source, &call);
            if !call.get_no_reply() {
                let _ = conn.send(reply);
            }
        }
    }
}

fn register(conn: &Connection) -> Result<(), Failure> {
    let path = Path::new(bus::AGENT_PATH).map_err(|e| anyhow!("bad agent path: {e}"))?;
    conn.with_proxy(bus::NAME, bus::PATH, BUS_TIMEOUT)
        .method_call::<(), _, _, _>(bus::INTERFACE, "RegisterAgent", (path,))
        .map_err(|e| {
            Failure::Unreachable(anyhow!(
                "{} did not take this agent: {}",
                bus::NAME,
                e.message().unwrap_or("no reason given")
            ))
        })
}

/// One call from the service: a question shown and the PIN asked for, or a face attempt shown.
fn answer(conn: &Connection, source: &mut Source, call: &Message) -> Message {
    let ours = call.path().is_some_and(|p| &*p == bus::AGENT_PATH)
        && call
            .interface()
            .is_some_and(|i| &*i == bus::AGENT_INTERFACE);
    let face_attempt = match call.member() {
        Some(m) if ours && &*m == "AskPin" => false,
        Some(m) if ours && &*m == "FaceAttempt" => true,
        _ => {
            return error(
                call,
                "org.freedesktop.DBus.Error.UnknownMethod",
                "a presence agent has only AskPin and FaceAttempt",
            );
        }
    };
    // Only root (aloha-presence; its workers call from their own connections) may ask:
    // anyone else asking is fishing for the PIN. The bus policy already lets only root call an
    // agent; this holds without it too. Root could read far more than a PIN anyway.
    let caller = call.sender().map(|s| s.to_string()).unwrap_or_default();
    let uid = conn
        .with_proxy("org.freedesktop.DBus", "/org/freedesktop/DBus", BUS_TIMEOUT)
        .method_call::<(u32,), _, _, _>("org.freedesktop.DBus", "GetConnectionUnixUser", (caller,))
        .map(|(uid,)| uid);
    if !matches!(uid, Ok(0)) {
        return error(
            call,
            "org.freedesktop.DBus.Error.AccessDenied",
            &format!("only {} may ask this agent", bus::NAME),
        );
    }
    if face_attempt {
        show_face_attempt(call)
    } else {
        ask_pin(source, call)
    }
}

/// Reason, application and note come from elsewhere: printed without control characters.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// The face is being tried: the person should look at the camera. Nothing to answer.
fn show_face_attempt(call: &Message) -> Message {
    let Ok((reason, application)) = call.read2::<String, String>() else {
        return error(
            call,
            "org.freedesktop.DBus.Error.InvalidArgs",
            "expected (s reason, s application)",
        );
    };
    eprintln!(
        "\n{} asks whether you are here: \"{}\"\nLook at the camera...",
        clean(&application),
        clean(&reason)
    );
    call.method_return()
}

/// The question shown, and the PIN asked for within the seconds the service gives.
fn ask_pin(source: &mut Source, call: &Message) -> Message {
    let Ok((reason, application, note, seconds)) = call.read4::<String, String, String, u32>()
    else {
        return error(
            call,
            "org.freedesktop.DBus.Error.InvalidArgs",
            "expected (s reason, s application, s note, u seconds)",
        );
    };
    eprintln!(
        "\n{} asks whether you are here: \"{}\"",
        clean(&application),
        clean(&reason)
    );
    if !note.is_empty() {
        eprintln!("{}", clean(&note));
    }
    let within = Duration::from_secs(seconds.into());
    match source.existing_within("PIN (Enter alone declines):", within) {
        Ok(Some(pin)) if !pin.is_empty() => call.method_return().append1(pin.expose()),
        Ok(Some(_)) => error(call, bus::error::CANCELLED, "declined"),
        Ok(None) => {
            eprintln!("No PIN within {seconds} s: the question was dropped.");
            error(call, bus::error::TIMED_OUT, "nobody answered in time")
        }
        Err(e) => error(call, bus::error::CANCELLED, &format!("no PIN: {e:#}")),
    }
}
