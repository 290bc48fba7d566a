//! Strings from outside (a PAM application's user name and service, a client's request) on
//! their way into a log line: quoted, escaped and bounded, so none can end the line early,
//! add a field of its own (`result=success`), or fill the log.

use std::fmt;

/// The most characters of one string a log line carries; the rest is cut with `…`.
pub const MAX_LOGGED_CHARS: usize = 64;

/// Displays as `"text"`: quotes, backslashes and every control or line-breaking character
/// escaped (`\n`, `\u{2028}`), cut after [`MAX_LOGGED_CHARS`].
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_LOGGED_CHARS {
                f.write_str("…")?;
                break;
            }
            match c {
                '"' | '\\' => write!(f, "\\{c}")?,
                ' ' => f.write_str(" ")?,
                // Control characters, and separators a viewer may break a line at.
                c if c.is_control() || c.is_whitespace() => write!(f, "{}", c.escape_unicode())?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cannot_end_a_line_or_add_a_field() {
        let forged = "alice\" result=success\nMar  1 alohad: forged\u{2028}x\r\t";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\u{2028}'));
        assert_eq!(
            shown.matches('"').count() - shown.matches("\\\"").count(),
            2,
            "{shown}"
        );
        assert!(
            shown.starts_with("\"alice\\\" result=success\\u{a}Mar"),
            "{shown}"
        );
        assert_eq!(Untrusted("sudo").to_string(), "\"sudo\"");
        assert_eq!(Untrusted("gdm-password").to_string(), "\"gdm-password\"");
    }

    #[test]
    fn bounded() {
        let long = "x".repeat(10_000);
        let shown = Untrusted(&long).to_string();
        assert_eq!(shown.chars().count(), MAX_LOGGED_CHARS + 3, "{shown}");
        assert!(shown.ends_with("…\""));
    }
}
