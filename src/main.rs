//! `aloha`: set, change and reset your PIN, check a sign-in, see your status; administrators
//! unlock and remove users. Everything goes through alohad; this program reads no state itself
//! (only the public key registry, to verify a signature).

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use aloha::challenge::{self, Nonce};
use aloha::config::Config;
use aloha::protocol::{Request, Response};
use aloha::registry;
use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};

use cli::prompt::Source;
use cli::{Ctx, Failure, done, say};

#[derive(Parser)]
#[command(
    name = "aloha",
    version,
    about = "Sign in with a PIN instead of your password (Aloha)"
)]
struct Cli {
    /// Configuration file (default /etc/aloha/aloha.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// alohad's socket (default: from the configuration).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set, change or reset your PIN.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Sign in with your PIN (or --face) without PAM: exit status 0 only for a verified
    /// signature.
    Verify {
        #[command(flatten)]
        target: Target,
        /// Sign in with your face instead of the PIN.
        #[arg(long)]
        face: bool,
        /// With --face: how long to look, in seconds.
        #[arg(long, default_value_t = 4.0, requires = "face")]
        seconds: f64,
    },
    /// Enrol, list, remove and test your face.
    #[command(subcommand)]
    Face(cli::face::FaceCommand),
    /// Your enrolment, backend, failed attempts and lockout state.
    Status {
        #[command(flatten)]
        target: UserArg,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Keep your account password sealed to your key, so a PIN or face sign-in unlocks the
    /// login keyring (opt-in), or forget it.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Answer applications that ask whether you are here (`agent`), or ask as one (`ask`).
    #[command(subcommand)]
    Presence(cli::presence::PresenceCommand),
    /// Administrator commands (root only).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The cameras face sign-in can use, the one it picks and why, and the IR emitter.
    Camera(cli::camera::CameraArgs),
    /// Check the installation and say how to fix what is wrong: alohad, the TPM's limits, the
    /// PAM services, the state's permissions, the camera and the models. Exit status 0: nothing
    /// wrong, 1: a warning or a problem.
    Doctor(cli::doctor::DoctorArgs),
}

#[derive(Subcommand)]
enum PinCommand {
    /// Create your key and PIN (non-root users give their account password first).
    Set(Target),
    /// Replace your PIN (the current PIN, then the new one).
    Change(Target),
    /// Forgotten or locked PIN: account password, then a new PIN; makes a new key.
    Reset(Target),
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Seal your account password (asked for and checked) to your Aloha key; each password
    /// sign-in refreshes it.
    Enable(Target),
    /// Forget the sealed password.
    Disable(UserArg),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Clear a user's failed attempts and lock.
    Unlock {
        #[arg(long, value_name = "NAME")]
        user: String,
    },
    /// Delete a user's PIN, key and counters (the password keeps working).
    Remove {
        #[arg(long, value_name = "NAME")]
        user: String,
    },
}

#[derive(Args)]
struct UserArg {
    /// Act for this user (root only; default: yourself).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

#[derive(Args)]
struct Target {
    #[command(flatten)]
    user: UserArg,
    /// Read the password and PINs from standard input, one per line, each once.
    #[arg(long)]
    pin_stdin: bool,
}

fn run(cli: Cli) -> Result<(), Failure> {
    let config = Config::load(cli.config.as_deref()).map_err(|e| Failure::Refused(e.into()))?;
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| config.daemon.socket.clone());
    let ctx = Ctx {
        config,
        socket,
        is_root: nix::unistd::getuid().is_root(),
    };
    match cli.command {
        Command::Pin(PinCommand::Set(t)) => {
            let user = ctx.user(t.user.user.as_deref())?;
            let mut input = Source::new(t.pin_stdin);
            let password = password_if_needed(&ctx, &mut input, &user)?;
            let pin = input.new_secret("New PIN:", "Repeat the PIN:")?;
            done(ctx.call(Request::PinSet {
                user,
                password,
                pin,
            })?)
        }
        Command::Pin(PinCommand::Change(t)) => {
            let user = ctx.user(t.user.user.as_deref())?;
            let mut input = Source::new(t.pin_stdin);
            let current_pin = input.existing("Current PIN:")?;
            let new_pin = input.new_secret("New PIN:", "Repeat the new PIN:")?;
            done(ctx.call(Request::PinChange {
                user,
                current_pin,
                new_pin,
            })?)
        }
        Command::Pin(PinCommand::Reset(t)) => {
            let user = ctx.user(t.user.user.as_deref())?;
            let mut input = Source::new(t.pin_stdin);
            let password = password_if_needed(&ctx, &mut input, &user)?;
            let new_pin = input.new_secret("New PIN:", "Repeat the new PIN:")?;
            done(ctx.call(Request::PinReset {
                user,
                password,
                new_pin,
            })?)
        }
        Command::Verify {
            target,
            face: true,
            seconds,
        } => cli::face::verify(&ctx, target.user.user.as_deref(), seconds),
        Command::Verify { target, .. } => verify(&ctx, &target),
        Command::Face(command) => cli::face::run(&ctx, command),
        Command::Presence(command) => cli::presence::run(&ctx, command),
        Command::Status { target, json } => {
            let user = ctx.user(target.user.as_deref())?;
            let Response::Status(status) = ctx.call(Request::Status { user })? else {
                return Err(cli::unexpected("status"));
            };
            if json {
                say(&format!("{}\n", cli::to_json(&status)?));
            } else {
                say(&cli::status::render(&status, cli::now()));
            }
            Ok(())
        }
        Command::Vault(VaultCommand::Enable(t)) => {
            let user = ctx.user(t.user.user.as_deref())?;
            let password =
                Source::new(t.pin_stdin).existing(&format!("Account password for {user}:"))?;
            done(ctx.call(Request::VaultEnable { user, password })?)
        }
        Command::Vault(VaultCommand::Disable(target)) => {
            let user = ctx.user(target.user.as_deref())?;
            done(ctx.call(Request::VaultDisable { user })?)
        }
        Command::Admin(AdminCommand::Unlock { user }) => {
            done(ctx.call(Request::AdminUnlock { user })?)
        }
        Command::Admin(AdminCommand::Remove { user }) => {
            done(ctx.call(Request::AdminRemove { user })?)
        }
        Command::Camera(args) => cli::camera::run(&ctx, args),
        Command::Doctor(_) => Err(Failure::Refused(anyhow!("aloha doctor runs on its own"))),
    }
}

fn password_if_needed(ctx: &Ctx, input: &mut Source, user: &str) -> Result<Option<aloha::Secret>> {
    if ctx.is_root {
        return Ok(None);
    }
    Ok(Some(
        input.existing(&format!("Account password for {user}:"))?,
    ))
}

/// The whole sign-in without PAM: our nonce, alohad's signature, our check against the
/// registered public key.
fn verify(ctx: &Ctx, t: &Target) -> Result<(), Failure> {
    let user = ctx.user(t.user.user.as_deref())?;
    let uid = nix::unistd::User::from_name(&user)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
        .ok_or_else(|| anyhow!("there is no user named {user}"))?;
    let registered = registry::load(&ctx.config.daemon.state_dir, &user, Some(uid))
        .map_err(|e| Failure::Refused(e.into()))?;
    let pin = Source::new(t.pin_stdin).existing("PIN:")?;
    if pin.is_empty() {
        return Err(Failure::Refused(anyhow!("no PIN given; nothing was tried")));
    }
    let nonce = Nonce::random().map_err(|e| Failure::Refused(e.into()))?;
    let response = ctx.call(Request::SignIn {
        user: user.clone(),
        service: "aloha-verify".into(),
        nonce,
        pin,
        vault: false,
    })?;
    let Response::Signed {
        signature, backend, ..
    } = response
    else {
        return Err(cli::unexpected("sign-in"));
    };
    challenge::verify(&registered.public_key, &user, &nonce, &signature)
        .with_context(|| format!("alohad's answer for {user} is not a valid proof"))?;
    say(&format!(
        "Verified: {user} signed a fresh challenge with the key in the {}.\n",
        backend.name()
    ));
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The doctor reports a broken configuration as one of its findings instead of stopping.
    if let Command::Doctor(args) = cli.command {
        return match cli::doctor::run(cli.config.as_deref(), cli.socket.as_deref(), args) {
            Ok(status) => ExitCode::from(status),
            Err(Failure::Refused(e) | Failure::Unreachable(e)) => {
                eprintln!("aloha: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(e)) => {
            eprintln!("aloha: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Unreachable(e)) => {
            eprintln!("aloha: {e:#}");
            ExitCode::from(3)
        }
    }
}
