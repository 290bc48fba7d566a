//! The key store and the TPM: where new PINs go, and whether the TPM's dictionary-attack
//! settings leave Aloha a failure budget that neither locks the TPM for everyone nor runs out
//! for good (alohad's status for the caller says both).

use aloha::config::{BackendChoice, Config};
use aloha::lockout::DaState;
use aloha::protocol::{BackendKind, UserStatus};

use super::{Check, Level};

/// How to change the TPM's settings (needs the lockout hierarchy's authorization).
const SET_DA: &str = "tpm2_dictionarylockout --setup-parameters --max-tries=32 \
                      --recovery-time=600 --lockout-recovery-time=86400";

pub fn checks(config: &Config, status: &UserStatus) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(problem) = &status.problem {
        out.push(
            Check::new("keys", Level::Problem, problem.clone())
                .fix("see `aloha status` and alohad's log (journalctl -u alohad)"),
        );
    }
    out.push(match (status.default_backend, config.tpm.backend) {
        (Some(BackendKind::Tpm), _) => Check::new(
            "keys",
            Level::Ok,
            format!("new PINs protect keys in the TPM ({})", config.tpm.tcti),
        ),
        (Some(BackendKind::Software), BackendChoice::Software) => Check::new(
            "keys",
            Level::Note,
            "new PINs go to the software vault, as tpm.backend = \"software\" asks: root or a \
             thief with the disk can guess a PIN offline",
        ),
        (Some(BackendKind::Software), _) => Check::new(
            "keys",
            Level::Warning,
            format!(
                "no usable TPM at {}: new PINs go to the software vault, where root or a thief \
                 with the disk can guess a PIN offline",
                config.tpm.tcti
            ),
        )
        .fix(
            "enable the TPM in the firmware and check /dev/tpmrm0 exists; or set tpm.backend = \
             \"software\" to accept the vault",
        ),
        (None, _) => Check::new(
            "keys",
            Level::Problem,
            "alohad has no key store for new PINs",
        )
        .fix("see alohad's log (journalctl -u alohad) for why the TPM and the vault failed"),
    });
    if status.backend == Some(BackendKind::Software)
        && status.default_backend == Some(BackendKind::Tpm)
    {
        out.push(
            Check::new(
                "keys",
                Level::Note,
                "your PIN is in the software vault although a TPM is in use now",
            )
            .fix("`aloha pin reset` moves it into the TPM"),
        );
    }
    if let Some(da) = status.tpm {
        out.extend(tpm_checks(config, status, da));
    }
    out
}

/// The TPM's dictionary-attack settings against Aloha's limits.
fn tpm_checks(config: &Config, status: &UserStatus, da: DaState) -> Vec<Check> {
    let headroom = config.tpm.da_headroom;
    let budget = da.max_tries.saturating_sub(headroom).saturating_sub(1);
    let forget = if da.recovery_seconds == 0 {
        "never forgets one".to_string()
    } else {
        format!("forgets one every {} s", da.recovery_seconds)
    };
    let mut out = vec![Check::new(
        "tpm",
        Level::Ok,
        format!(
            "the TPM locks after {} wrong PINs and {forget}; it remembers {} now; Aloha stops \
             {headroom} short, leaving {budget} to share between users{}",
            da.max_tries,
            da.counter,
            status
                .tpm_share
                .map_or(String::new(), |s| format!(" (your share: {})", s.share)),
        ),
    )];
    out.extend(pause_check(status, da, headroom));
    if budget == 0 {
        out.push(
            Check::new(
                "tpm",
                Level::Problem,
                format!(
                    "the TPM allows {} wrong PINs and Aloha keeps {headroom} in reserve: no TPM \
                     PIN may ever be tried",
                    da.max_tries
                ),
            )
            .fix(format!(
                "lower tpm.da_headroom, or raise the TPM's limit: {SET_DA}"
            )),
        );
    }
    if da.recovery_seconds == 0 {
        out.push(
            Check::new(
                "tpm",
                Level::Warning,
                "the TPM never forgets a wrong PIN: once a user has used their share, their PIN \
                 stays paused until an administrator clears the TPM's counter",
            )
            .fix(format!("give the TPM a recovery time: {SET_DA}")),
        );
    }
    if budget > 0 && config.lockout.max_attempts > budget {
        out.push(
            Check::new(
                "tpm",
                Level::Warning,
                format!(
                    "lockout.max_attempts = {} is more than the {budget} wrong PINs the TPM's \
                     budget allows: users reach the TPM's pause before Aloha's own lock",
                    config.lockout.max_attempts
                ),
            )
            .fix(format!("set lockout.max_attempts to at most {budget}")),
        );
    }
    out
}

/// The TPM in lockout, or Aloha's guard pausing PIN sign-in for every TPM user.
fn pause_check(status: &UserStatus, da: DaState, headroom: u32) -> Option<Check> {
    if da.in_lockout {
        return Some(
            Check::new(
                "tpm",
                Level::Problem,
                "the TPM is in dictionary-attack lockout: PIN sign-in is paused for every user \
                 (the password works)",
            )
            .fix("wait for the TPM's lockout recovery, or `tpm2_dictionarylockout --clear-lockout` with the lockout authorization"),
        );
    }
    if status.tpm_pause.is_some() {
        return Some(
            Check::new(
                "tpm",
                Level::Warning,
                format!(
                    "the TPM remembers {} wrong PINs, within {headroom} of its limit: PIN \
                     sign-in is paused for every TPM user until it forgets some",
                    da.counter
                ),
            )
            .fix(
                "wait, or `tpm2_dictionarylockout --clear-lockout` with the lockout authorization",
            ),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloha::lockout::{TpmPause, TpmShare};

    fn status(default: Option<BackendKind>, tpm: Option<DaState>) -> UserStatus {
        UserStatus {
            tpm,
            default_backend: default,
            tpm_share: Some(TpmShare {
                debt: 0,
                share: 29,
                next_forgotten: None,
            }),
            ..crate::cli::sample_status()
        }
    }

    fn da(max_tries: u32, recovery_seconds: u32) -> DaState {
        DaState {
            counter: 0,
            max_tries,
            recovery_seconds,
            in_lockout: false,
        }
    }

    fn levels(checks: &[Check]) -> Vec<(Level, &str)> {
        checks.iter().map(|c| (c.level, c.what.as_str())).collect()
    }

    #[test]
    fn a_windows_like_tpm_is_fine() {
        let c = checks(
            &Config::default(),
            &status(Some(BackendKind::Tpm), Some(da(32, 600))),
        );
        assert!(c.iter().all(|c| c.level == Level::Ok), "{:?}", levels(&c));
        assert!(
            c[1].what.contains("leaving 29 to share"),
            "{:?}",
            levels(&c)
        );
    }

    #[test]
    fn settings_that_pause_or_strand_users_are_named() {
        // swtpm's defaults are 3 tries: with headroom 2 nothing is left.
        let c = checks(
            &Config::default(),
            &status(Some(BackendKind::Tpm), Some(da(3, 1000))),
        );
        assert!(
            c.iter()
                .any(|c| c.level == Level::Problem && c.what.contains("no TPM PIN may ever"))
        );
        // A TPM that never forgets.
        let c = checks(
            &Config::default(),
            &status(Some(BackendKind::Tpm), Some(da(32, 0))),
        );
        assert!(
            c.iter()
                .any(|c| c.level == Level::Warning && c.what.contains("never forgets"))
        );
        // Aloha's lock beyond the budget.
        let c = checks(
            &Config::default(),
            &status(Some(BackendKind::Tpm), Some(da(8, 600))),
        );
        assert!(
            c.iter()
                .any(|c| c.level == Level::Warning && c.what.contains("max_attempts = 10")),
            "{:?}",
            levels(&c)
        );
        // In lockout, and paused.
        let mut locked = da(32, 600);
        locked.in_lockout = true;
        let c = checks(
            &Config::default(),
            &status(Some(BackendKind::Tpm), Some(locked)),
        );
        assert!(
            c.iter()
                .any(|c| c.level == Level::Problem && c.what.contains("lockout"))
        );
        let mut paused = status(Some(BackendKind::Tpm), Some(da(32, 600)));
        paused.tpm_pause = Some(TpmPause {
            in_lockout: false,
            until: None,
        });
        let c = checks(&Config::default(), &paused);
        assert!(
            c.iter()
                .any(|c| c.level == Level::Warning && c.what.contains("paused"))
        );
    }

    #[test]
    fn the_vault_is_a_warning_only_when_a_tpm_was_wanted() {
        let c = checks(
            &Config::default(),
            &status(Some(BackendKind::Software), None),
        );
        assert_eq!(c[0].level, Level::Warning, "{:?}", levels(&c));
        let mut config = Config::default();
        config.tpm.backend = BackendChoice::Software;
        let c = checks(&config, &status(Some(BackendKind::Software), None));
        assert_eq!(c[0].level, Level::Note, "{:?}", levels(&c));
        let mut broken = status(None, None);
        broken.problem = Some("container.json is corrupt".into());
        let c = checks(&Config::default(), &broken);
        assert_eq!(c.iter().filter(|c| c.level == Level::Problem).count(), 2);
    }
}
