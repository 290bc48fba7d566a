//! What a PAM service's auth stack runs, read the way libpam reads it: `DIR/SERVICE` (the
//! system's `/etc/pam.d`, then `/usr/lib/pam.d`; `other` when the service has no file), with
//! every `include`, `substack` and Debian `@include` followed, relative to the same directories.
//!
//! Two readers: alohad refuses to check account passwords through a service that runs
//! pam_aloha (a PIN would vouch for itself), and `aloha doctor` says where pam_aloha sits in
//! every service and whether the password is still a fallback there.

use std::fs;
use std::path::{Path, PathBuf};

/// The system's PAM configuration directories, in the order libpam reads them.
pub const SYSTEM_DIRS: [&str; 2] = ["/etc/pam.d", "/usr/lib/pam.d"];
/// Deeper include chains are not followed (libpam stops at a similar depth).
const MAX_DEPTH: usize = 16;
/// A PAM file larger than this is not read (none is anywhere near it).
const MAX_FILE_LEN: u64 = 1024 * 1024;

/// Where a line is: the file and line number, as an administrator would look for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One `auth` line of a service's stack, includes expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLine {
    pub at: Found,
    /// `required`, `sufficient`, `[success=done default=ignore]`...
    pub control: String,
    /// The module as written (a name or a path).
    pub module: String,
    /// Written `-auth`: libpam skips it quietly if the module is missing.
    pub may_be_missing: bool,
    /// The module's arguments.
    pub args: Vec<String>,
}

impl AuthLine {
    /// The module's file name (`pam_unix.so` for `/lib/security/pam_unix.so`).
    pub fn module_name(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }

    /// A pam_aloha line that signs in: any but a `keep_password` line (which only hands the
    /// accepted password to the vault and never signs anyone in).
    pub fn is_pam_aloha(&self) -> bool {
        self.module_name().contains("pam_aloha") && !self.args.iter().any(|a| a == "keep_password")
    }
}

/// The PAM directories to read: a private one (as with `pam_start_confdir`) or the system's.
pub fn dirs(confdir: Option<&Path>) -> Vec<PathBuf> {
    match confdir {
        Some(d) => vec![d.to_path_buf()],
        None => SYSTEM_DIRS.iter().map(PathBuf::from).collect(),
    }
}

/// The file libpam reads for `service` (`other` when it has none).
pub fn service_file(service: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    [service, "other"]
        .iter()
        .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
}

/// `service`'s auth lines in the order libpam runs them. Unreadable files are skipped: libpam
/// would fail on them too.
pub fn auth_stack(service: &str, dirs: &[PathBuf]) -> Vec<AuthLine> {
    let mut out = Vec::new();
    if let Some(file) = service_file(service, dirs) {
        walk(&file, dirs, 0, &mut Vec::new(), &mut out);
    }
    out
}

/// The first `auth` line that loads pam_aloha in `service`'s stack (`confdir`: a private
/// directory as with `pam_start_confdir`; `None`: the system's).
pub fn find_pam_aloha(service: &str, confdir: Option<&Path>) -> Option<Found> {
    auth_stack(service, &dirs(confdir))
        .into_iter()
        .find(AuthLine::is_pam_aloha)
        .map(|l| l.at)
}

fn walk(
    file: &Path,
    dirs: &[PathBuf],
    depth: usize,
    seen: &mut Vec<PathBuf>,
    out: &mut Vec<AuthLine>,
) {
    // A cycle or a runaway chain adds nothing more (libpam would refuse the service).
    if depth > MAX_DEPTH || seen.iter().any(|s| s == file) {
        return;
    }
    seen.push(file.to_path_buf());
    let Some(text) = read_small(file) else {
        seen.pop();
        return;
    };
    for (n, line) in logical_lines(&text) {
        let tokens = tokens(&line);
        let Some(first) = tokens.first() else {
            continue;
        };
        if first == "@include" {
            if let Some(f) = tokens.get(1).and_then(|name| resolve(name, dirs)) {
                walk(&f, dirs, depth + 1, seen, out);
            }
            continue;
        }
        if first.trim_start_matches('-') != "auth" {
            continue;
        }
        let (Some(control), Some(module)) = (tokens.get(1), tokens.get(2)) else {
            continue;
        };
        if control == "include" || control == "substack" {
            if let Some(f) = resolve(module, dirs) {
                walk(&f, dirs, depth + 1, seen, out);
            }
            continue;
        }
        out.push(AuthLine {
            at: Found {
                file: file.to_path_buf(),
                line: n,
            },
            control: control.clone(),
            module: module.clone(),
            may_be_missing: first.starts_with('-'),
            args: tokens[3..].to_vec(),
        });
    }
    // The same file included twice in a row (common-auth from two places) is read twice, as
    // libpam does; only a file including itself is a cycle.
    seen.pop();
}

fn read_small(file: &Path) -> Option<String> {
    let len = fs::metadata(file).ok()?.len();
    (len <= MAX_FILE_LEN).then(|| fs::read_to_string(file).ok())?
}

/// An included name: absolute, or looked up in the same directories as the service.
fn resolve(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Some(PathBuf::from(name));
    }
    if name.contains('/') {
        return None;
    }
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Lines without comments, joined where a line ends in a backslash, with their first line's
/// number (1-based).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let (body, continued) = match line.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (line, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push_str(body);
        entry.1.push(' ');
        if !continued && let Some(done) = current.take() {
            out.push(done);
        }
    }
    out.extend(current);
    out
}

/// Whitespace-separated fields, a `[...]` control field kept whole.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut token = String::new();
        if c == '[' {
            for c in chars.by_ref() {
                token.push(c);
                if c == ']' {
                    break;
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                token.push(c);
                chars.next();
            }
        }
        out.push(token);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(files: &[(&str, &str)]) -> Dir {
            let mut b = [0u8; 6];
            getrandom::fill(&mut b).unwrap();
            let d =
                std::env::temp_dir().join(format!("aloha-pam-stack-{}", crate::hex::encode(&b)));
            fs::create_dir_all(&d).unwrap();
            for (name, body) in files {
                fs::write(d.join(name), body).unwrap();
            }
            Dir(d)
        }
        fn find(&self, service: &str) -> Option<Found> {
            find_pam_aloha(service, Some(&self.0))
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const ENABLED_COMMON_AUTH: &str = "# pam-auth-update's output\n\
        auth\t[success=2 default=ignore]\tpam_aloha.so\n\
        auth\t[success=1 default=ignore]\tpam_unix.so nullok\n\
        auth\trequisite\tpam_deny.so\n";

    #[test]
    fn a_keep_password_line_is_not_a_sign_in() {
        // pam-auth-update's output with both of the package's profiles.
        let both = format!(
            "{ENABLED_COMMON_AUTH}auth\trequired\tpam_permit.so\nauth\toptional\tpam_aloha.so keep_password\n"
        );
        let d = Dir::new(&[
            (
                "only-keep",
                "auth required pam_unix.so\nauth optional pam_aloha.so keep_password\n",
            ),
            ("login", "@include common-auth\n"),
            ("common-auth", &both),
        ]);
        assert_eq!(d.find("only-keep"), None);
        let stack = auth_stack("login", std::slice::from_ref(&d.0));
        assert_eq!(stack.len(), 5);
        assert_eq!(stack.iter().filter(|l| l.is_pam_aloha()).count(), 1);
        assert_eq!(stack[4].args, ["keep_password"]);
    }

    #[test]
    fn a_password_only_service_is_clean() {
        let d = Dir::new(&[
            (
                "aloha",
                "auth required pam_unix.so\naccount required pam_unix.so\n",
            ),
            ("common-auth", ENABLED_COMMON_AUTH),
        ]);
        assert_eq!(d.find("aloha"), None);
    }

    #[test]
    fn found_directly_and_through_every_kind_of_include() {
        let d = Dir::new(&[
            (
                "direct",
                "account required pam_unix.so\nauth sufficient /lib/security/pam_aloha.so debug\n",
            ),
            (
                "debian",
                "@include common-auth\naccount required pam_unix.so\n",
            ),
            ("fedora", "auth  include  system-auth\n"),
            ("sub", "-auth substack common-auth\n"),
            ("continued", "auth \\\n  sufficient \\\n  pam_aloha.so\n"),
            (
                "system-auth",
                "auth required pam_env.so\nauth sufficient pam_aloha.so\n",
            ),
            ("common-auth", ENABLED_COMMON_AUTH),
        ]);
        let at = |service| {
            d.find(service)
                .map(|f| (f.file.file_name().unwrap().to_owned(), f.line))
        };
        assert_eq!(at("direct"), Some(("direct".into(), 2)));
        assert_eq!(at("debian"), Some(("common-auth".into(), 2)));
        assert_eq!(at("fedora"), Some(("system-auth".into(), 2)));
        assert_eq!(at("sub"), Some(("common-auth".into(), 2)));
        assert_eq!(at("continued"), Some(("continued".into(), 1)));
    }

    #[test]
    fn other_lines_comments_cycles_and_the_fallback() {
        let d = Dir::new(&[
            (
                "comment",
                "# auth sufficient pam_aloha.so\nauth required pam_unix.so # pam_aloha.so\n",
            ),
            (
                "account-only",
                "account required pam_aloha.so\nsession optional pam_aloha.so\n",
            ),
            ("loop-a", "@include loop-b\nauth required pam_unix.so\n"),
            ("loop-b", "@include loop-a\n"),
            ("other", ENABLED_COMMON_AUTH),
        ]);
        assert_eq!(d.find("comment"), None);
        assert_eq!(d.find("account-only"), None);
        assert_eq!(d.find("loop-a"), None);
        // No file for the service: libpam uses `other`.
        assert_eq!(d.find("missing").map(|f| f.line), Some(2));
    }
}
