//! Where pam_aloha sits in every PAM service, and whether that is safe: a right PIN must end
//! the stack, a wrong one (or alohad gone) must fall through to the password, and the password
//! must come after it. alohad's own password service must not run it at all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aloha::config::Config;
use aloha::pam_stack::{AuthLine, auth_stack, service_file};

use super::{Check, Level};

/// Files that only exist to be included, not services a program starts.
const INCLUDE_ONLY: [&str; 6] = [
    "system-auth",
    "password-auth",
    "fingerprint-auth",
    "smartcard-auth",
    "postlogin",
    "config-util",
];

/// Modules that check the account password: the fallback pam_aloha must sit above.
const PASSWORD_MODULES: [&str; 8] = [
    "pam_unix.so",
    "pam_unix2.so",
    "pam_sss.so",
    "pam_ldap.so",
    "pam_krb5.so",
    "pam_winbind.so",
    "pam_systemd_home.so",
    "pam_pwdb.so",
];

/// Where the distributions keep PAM modules (Debian multiarch, Fedora, others).
pub fn module_dirs() -> Vec<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/security",
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib/aarch64-linux-gnu/security",
        "/lib/aarch64-linux-gnu/security",
        "/usr/lib64/security",
        "/lib64/security",
        "/usr/lib/security",
        "/lib/security",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

pub fn checks(config: &Config, dirs: &[PathBuf], module_dirs: &[PathBuf]) -> Vec<Check> {
    let mut out = Vec::new();
    let mut enabled = Vec::new();
    let password_service = &config.daemon.password_service;
    for service in services(dirs) {
        if &service == password_service {
            continue;
        }
        let stack = auth_stack(&service, dirs);
        if stack.iter().any(AuthLine::is_pam_aloha) {
            out.extend(judge(&service, &stack, module_dirs));
            enabled.push(service);
        }
    }
    out.push(password_service_check(config, dirs));
    if enabled.is_empty() {
        out.push(
            Check::new(
                "pam",
                Level::Warning,
                format!(
                    "no PAM service in {} runs pam_aloha: sign-in asks only for the password",
                    shown(dirs)
                ),
            )
            .fix(
                "enable it: `pam-auth-update --enable aloha` (Debian, Ubuntu), or the authselect \
                 steps in /usr/share/doc/aloha/AUTHSELECT.md (Fedora)",
            ),
        );
    }
    out
}

fn shown(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Every service file in `dirs` (the first directory holding a name wins, as in libpam),
/// without the include-only ones.
fn services(dirs: &[PathBuf]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let include_only = name.starts_with("common-") || INCLUDE_ONLY.contains(&name.as_str());
            if !include_only && !name.starts_with('.') && !name.ends_with('~') && e.path().is_file()
            {
                names.insert(name);
            }
        }
    }
    names
}

/// alohad checks account passwords through this service: pam_aloha in it would let a PIN
/// vouch for itself (alohad refuses password checks then).
fn password_service_check(config: &Config, dirs: &[PathBuf]) -> Check {
    let service = &config.daemon.password_service;
    let own = config.daemon.password_service_dir.as_os_str().is_empty();
    let dirs = if own {
        dirs.to_vec()
    } else {
        vec![config.daemon.password_service_dir.clone()]
    };
    let Some(file) = service_file(service, &dirs) else {
        return Check::new(
            "pam",
            Level::Problem,
            format!(
                "alohad's password service {service:?} is missing from {}",
                shown(&dirs)
            ),
        )
        .fix("reinstall aloha (it ships the service); non-root users cannot set a PIN without it");
    };
    match auth_stack(service, &dirs)
        .into_iter()
        .find(AuthLine::is_pam_aloha)
    {
        Some(line) => Check::new(
            "pam",
            Level::Problem,
            format!(
                "alohad's password service {service:?} runs pam_aloha ({}): a PIN could vouch \
                 for itself, so alohad refuses password checks",
                line.at
            ),
        )
        .fix(format!(
            "make {} password-only (pam_unix or pam_sss, not common-auth)",
            file.display()
        )),
        None => Check::new(
            "pam",
            Level::Ok,
            format!(
                "alohad's password service {service:?} ({}) asks only for the password",
                file.display()
            ),
        ),
    }
}

/// A finding before it is tied to its service: level, what, fix.
type Finding = (Level, String, &'static str);

/// The verdict on one service whose auth stack runs pam_aloha.
fn judge(service: &str, stack: &[AuthLine], module_dirs: &[PathBuf]) -> Vec<Check> {
    let Some(at) = stack.iter().position(AuthLine::is_pam_aloha) else {
        return Vec::new();
    };
    let aloha = &stack[at];
    let mut findings = control_findings(aloha);
    findings.extend(placement_findings(stack, at, module_dirs));
    if findings.is_empty() {
        return vec![Check::new(
            "pam",
            Level::Ok,
            format!(
                "{service}: PIN first ({}, `{}`), then the password",
                aloha.at, aloha.control
            ),
        )];
    }
    findings
        .into_iter()
        .map(|(level, what, fix)| Check::new("pam", level, format!("{service}: {what}")).fix(fix))
        .collect()
}

/// What pam_aloha's control field does with its results.
fn control_findings(aloha: &AuthLine) -> Vec<Finding> {
    const FIX: &str = "use `[success=done default=ignore]` (or `sufficient`), as pam-auth-update \
                       and authselect write it";
    let actions = Actions::of(&aloha.control);
    let mut out = Vec::new();
    let fails = [
        ("a wrong PIN", &actions.auth_err),
        ("a lock", &actions.maxtries),
        ("alohad being down", &actions.ignore),
    ]
    .into_iter()
    .find(|(_, action)| *action == "bad" || *action == "die");
    if let Some((result, _)) = fails {
        out.push((
            Level::Problem,
            format!(
                "pam_aloha is `{}` at {}: {result} fails the sign-in even with the right password",
                aloha.control, aloha.at
            ),
            FIX,
        ));
    }
    if !actions.success_ends_or_jumps() {
        out.push((
            Level::Warning,
            format!(
                "pam_aloha is `{}` at {}: a right PIN does not sign in by itself",
                aloha.control, aloha.at
            ),
            FIX,
        ));
    }
    out
}

/// Where pam_aloha stands among the other lines, and whether its module is there.
fn placement_findings(stack: &[AuthLine], at: usize, module_dirs: &[PathBuf]) -> Vec<Finding> {
    let aloha = &stack[at];
    let is_password = |l: &&AuthLine| PASSWORD_MODULES.contains(&l.module_name());
    let mut out = Vec::new();
    if let Some(before) = stack[..at].iter().find(is_password) {
        out.push((
            Level::Warning,
            format!(
                "the password ({} at {}) is asked before the PIN ({})",
                before.module_name(),
                before.at,
                aloha.at
            ),
            "put pam_aloha above the password module",
        ));
    }
    if !stack[at + 1..].iter().any(|l| is_password(&l)) {
        out.push((
            Level::Warning,
            format!(
                "no password module follows pam_aloha ({}): if the PIN fails, the password is not asked",
                aloha.at
            ),
            "keep pam_unix (or pam_sss) after pam_aloha so the password always works",
        ));
    }
    if let Some(again) = stack[at + 1..].iter().find(|l| l.is_pam_aloha()) {
        out.push((
            Level::Warning,
            format!(
                "pam_aloha runs twice ({} and {}): the PIN is asked twice",
                aloha.at, again.at
            ),
            "keep one pam_aloha line",
        ));
    }
    if !aloha.may_be_missing && !module_exists(&aloha.module, module_dirs) {
        out.push((
            Level::Problem,
            format!(
                "{} ({}) is not installed: libpam logs an error at every sign-in",
                aloha.module, aloha.at
            ),
            "reinstall aloha, or take it out: `pam-auth-update --disable aloha`",
        ));
    }
    out
}

fn module_exists(module: &str, dirs: &[PathBuf]) -> bool {
    if module.starts_with('/') {
        return Path::new(module).is_file();
    }
    dirs.iter().any(|d| d.join(module).is_file())
}

/// What libpam does with each of pam_aloha's results under a control field.
#[derive(Debug, PartialEq, Eq)]
struct Actions {
    success: String,
    auth_err: String,
    maxtries: String,
    ignore: String,
}

impl Actions {
    /// The keywords as pam.conf(5) defines them; in `[...]` a result not named takes
    /// `default`, and without a default libpam counts it as `bad`.
    fn of(control: &str) -> Actions {
        let simple = |success: &str, fail: &str| Actions {
            success: success.into(),
            auth_err: fail.into(),
            maxtries: fail.into(),
            ignore: "ignore".into(),
        };
        match control {
            "required" => simple("ok", "bad"),
            "requisite" => simple("ok", "die"),
            "sufficient" => simple("done", "ignore"),
            "optional" => simple("ok", "ignore"),
            _ => {
                let pairs: Vec<(&str, &str)> = control
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .split_whitespace()
                    .filter_map(|p| p.split_once('='))
                    .collect();
                let get = |key: &str| {
                    pairs
                        .iter()
                        .find(|(k, _)| *k == key)
                        .or_else(|| pairs.iter().find(|(k, _)| *k == "default"))
                        .map_or("bad", |(_, v)| v)
                        .to_string()
                };
                Actions {
                    success: get("success"),
                    auth_err: get("auth_err"),
                    maxtries: get("maxtries"),
                    ignore: get("ignore"),
                }
            }
        }
    }

    /// `done`, or a jump (pam-auth-update's `success=N` lands on pam_permit).
    fn success_ends_or_jumps(&self) -> bool {
        self.success == "done" || self.success.parse::<u32>().is_ok_and(|n| n > 0)
    }
}

#[cfg(test)]
mod tests;
