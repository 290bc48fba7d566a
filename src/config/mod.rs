//! `/etc/aloha/aloha.toml`: versioned TOML, every key optional with a documented default,
//! unknown keys refused by name. `packaging/aloha.toml` is the annotated reference.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

mod face;

pub use face::{CameraChoice, EmitterChoice, FaceSettings};

use crate::lockout::LockoutPolicy;
use crate::policy::PinPolicy;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/aloha/aloha.toml";
pub const DEFAULT_SOCKET: &str = "/run/aloha/alohad.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/aloha";
/// The only config format version this build understands.
pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Format version of this file. Default 1 (the only one).
    pub version: u32,
    pub daemon: DaemonConfig,
    pub tpm: TpmConfig,
    pub pin: PinPolicy,
    pub lockout: LockoutPolicy,
    pub face: FaceSettings,
    pub vault: VaultConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            daemon: DaemonConfig::default(),
            tpm: TpmConfig::default(),
            pin: PinPolicy::default(),
            lockout: LockoutPolicy::default(),
            face: FaceSettings::default(),
            vault: VaultConfig::default(),
        }
    }
}

/// The shortest idle exit: the doubling waits after wrong account passwords live in alohad's
/// memory (2 s … 60 s). Waiting this long idle to start them over costs a guesser more than
/// the waits themselves (at 60 s per guess, 5 guesses take 300 s).
pub const MIN_IDLE_EXIT_S: u64 = 300;

/// `[daemon]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Unix socket alohad listens on. Default "/run/aloha/alohad.sock".
    pub socket: PathBuf,
    /// alohad's state: `private/` (root-only 0700/0600: key containers, attempt counters, PIN
    /// history) and `public/` (0755/0644: the users' public keys, which PAM modules running
    /// as the user — screen lockers — must read). Default "/var/lib/aloha".
    pub state_dir: PathBuf,
    /// Deadline in milliseconds for reading or writing one protocol frame. Default 5000.
    pub io_timeout_ms: u64,
    /// Most clients served at once; more are told to retry. Default 64.
    pub max_connections: usize,
    /// Most connections of one non-root uid served at once, so one local user cannot take every
    /// slot; its further ones wait in line (at most `max_connections`). root (sudo, su,
    /// greeters) is bound only by `max_connections`. Default 4.
    pub max_connections_per_uid: usize,
    /// Longest a connection may stay open in milliseconds, however often it sends. Default 60000.
    pub connection_lifetime_ms: u64,
    /// PAM service alohad uses to check an account password before a non-root user sets or
    /// resets a PIN. It must not include pam_aloha. Default "aloha" (/etc/pam.d/aloha).
    pub password_service: String,
    /// Directory holding `password_service`'s file; empty means the system's /etc/pam.d.
    /// Default "" (system).
    pub password_service_dir: PathBuf,
    /// When started by socket activation (alohad.socket), exit after this many seconds
    /// without a client; systemd starts alohad again on the next request. 0: never; else at
    /// least [`MIN_IDLE_EXIT_S`]. Default 600.
    pub idle_exit_s: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            io_timeout_ms: 5000,
            max_connections: 64,
            max_connections_per_uid: 4,
            connection_lifetime_ms: 60_000,
            password_service: "aloha".into(),
            password_service_dir: PathBuf::new(),
            idle_exit_s: 600,
        }
    }
}

impl DaemonConfig {
    pub fn io_timeout(&self) -> Duration {
        Duration::from_millis(self.io_timeout_ms)
    }

    pub fn connection_lifetime(&self) -> Duration {
        Duration::from_millis(self.connection_lifetime_ms)
    }

    /// `idle_exit_s` as a duration; `None` for 0 (never exit).
    pub fn idle_exit(&self) -> Option<Duration> {
        (self.idle_exit_s > 0).then(|| Duration::from_secs(self.idle_exit_s))
    }
}

/// Which key store protects new containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The TPM if alohad can open it, else the software vault.
    Auto,
    /// The TPM; alohad refuses to start without one.
    Tpm,
    /// The software vault, even where a TPM exists.
    Software,
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Tpm => "tpm",
            BackendChoice::Software => "software",
        })
    }
}

/// `[tpm]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TpmConfig {
    /// auto | tpm | software. Default "auto".
    pub backend: BackendChoice,
    /// How to reach the TPM (a tpm2-tss TCTI string), e.g. "device:/dev/tpmrm0" or
    /// "swtpm:host=127.0.0.1,port=2321". Default "device:/dev/tpmrm0".
    pub tcti: String,
    /// PIN attempts stop while the TPM's dictionary-attack counter is within this many failures
    /// of its maxTries, so Aloha never drives the TPM into its global lockout (which would
    /// lock every user's keys and other TPM users such as disk encryption). Default 2.
    pub da_headroom: u32,
}

impl Default for TpmConfig {
    fn default() -> Self {
        TpmConfig {
            backend: BackendChoice::Auto,
            tcti: "device:/dev/tpmrm0".into(),
            da_headroom: 2,
        }
    }
}

/// `[vault]`: whether users may keep their account password sealed to their key (`aloha vault
/// enable`), so a PIN or face sign-in unlocks the login keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// never | tpm | any. Default "tpm": only where the user's key is in a TPM (the vault then
    /// opens only inside that TPM, for the PIN or face). "any" also allows it on the software
    /// vault, where whoever reads alohad's state can guess the PIN offline and so read the
    /// password.
    pub allow: VaultAllow,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            allow: VaultAllow::Tpm,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultAllow {
    Never,
    Tpm,
    Any,
}

impl VaultAllow {
    /// Whether a vault may be kept for a key in `backend`.
    pub fn allows(self, backend: crate::protocol::BackendKind) -> bool {
        match self {
            VaultAllow::Never => false,
            VaultAllow::Tpm => backend == crate::protocol::BackendKind::Tpm,
            VaultAllow::Any => true,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Load `path`, or the default path. A missing default file means "all defaults"; a
    /// missing file the caller named explicitly is an error.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.version != CONFIG_VERSION {
            return Err(format!(
                "version = {} is not supported by this Aloha (it reads version {CONFIG_VERSION})",
                self.version
            ));
        }
        if !self.daemon.socket.is_absolute() {
            return Err("daemon.socket must be an absolute path".into());
        }
        if !self.daemon.state_dir.is_absolute() {
            return Err("daemon.state_dir must be an absolute path".into());
        }
        if self.daemon.io_timeout_ms == 0 {
            return Err("daemon.io_timeout_ms must be greater than 0".into());
        }
        if self.daemon.max_connections == 0 {
            return Err("daemon.max_connections must be at least 1".into());
        }
        if self.daemon.max_connections_per_uid == 0 {
            return Err("daemon.max_connections_per_uid must be at least 1".into());
        }
        if self.daemon.connection_lifetime_ms < self.daemon.io_timeout_ms {
            return Err(format!(
                "daemon.connection_lifetime_ms = {} must be at least daemon.io_timeout_ms = {}",
                self.daemon.connection_lifetime_ms, self.daemon.io_timeout_ms
            ));
        }
        if self.daemon.idle_exit_s > 0 && self.daemon.idle_exit_s < MIN_IDLE_EXIT_S {
            return Err(format!(
                "daemon.idle_exit_s = {} is too short: use 0 (never exit) or at least \
                 {MIN_IDLE_EXIT_S}. alohad keeps the waits after wrong account passwords in \
                 memory, and an exit sooner would let a guesser start them over",
                self.daemon.idle_exit_s
            ));
        }
        if self.daemon.password_service.is_empty() || self.daemon.password_service.contains('/') {
            return Err(
                "daemon.password_service must be a PAM service name such as \"aloha\"".into(),
            );
        }
        if self.tpm.tcti.is_empty() {
            return Err("tpm.tcti must not be empty".into());
        }
        self.pin.validate()?;
        self.lockout.validate()?;
        self.face.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/test/aloha.toml"))
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn keys_override_defaults() {
        let c = parse(
            "version = 1\n[daemon]\nsocket = \"/tmp/a.sock\"\n[tpm]\nbackend = \"software\"\n\
             [pin]\nmin_length = 8\ndigits = \"require\"\n[lockout]\nmax_attempts = 5\n",
        )
        .unwrap();
        assert_eq!(c.daemon.socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.daemon.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(c.tpm.backend, BackendChoice::Software);
        assert_eq!(c.pin.min_length, 8);
        assert_eq!(c.lockout.max_attempts, 5);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("[daemon]\nsokcet = \"/tmp/a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sokcet"), "{err}");
        let err = parse("[pim]\nmin_length = 4\n").unwrap_err().to_string();
        assert!(err.contains("pim"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        let err = parse("version = 2\n").unwrap_err().to_string();
        assert!(err.contains("version = 2"), "{err}");
        let err = parse("[daemon]\nidle_exit_s = 30\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("idle_exit_s = 30 is too short"), "{err}");
        assert_eq!(
            parse("[daemon]\nidle_exit_s = 0\n")
                .unwrap()
                .daemon
                .idle_exit(),
            None
        );
        assert_eq!(
            parse("[daemon]\nidle_exit_s = 300\n")
                .unwrap()
                .daemon
                .idle_exit(),
            Some(Duration::from_secs(300))
        );
        let err = parse("[pin]\nmin_length = 2\n").unwrap_err().to_string();
        assert!(err.contains("pin.min_length"), "{err}");
        let err = parse("[tpm]\nbackend = \"hsm\"\n").unwrap_err().to_string();
        assert!(err.contains("hsm"), "{err}");
        let err = parse("[daemon]\nmax_connections_per_uid = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_connections_per_uid"), "{err}");
        let err = parse("[daemon]\nconnection_lifetime_ms = 100\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("io_timeout_ms = 5000"), "{err}");
        let err = parse("[daemon]\nstate_dir = \"relative\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("state_dir"), "{err}");
    }

    #[test]
    fn the_shipped_reference_file_is_exactly_the_defaults() {
        let text = include_str!("../../packaging/aloha.toml");
        assert_eq!(parse(text).unwrap(), Config::default());
        // ... and it mentions every key the code knows.
        let all = toml::to_string(&Config::default()).unwrap();
        for line in all.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            assert!(
                text.contains(&format!("\n{key} = ")),
                "packaging/aloha.toml does not document {key}"
            );
        }
    }

    #[test]
    fn missing_default_file_is_defaults_but_missing_named_file_is_an_error() {
        assert!(Config::load(Some(Path::new("/nonexistent/aloha.toml"))).is_err());
    }
}
