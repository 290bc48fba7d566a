//! PIN policy: Windows Hello's knobs as a floor. Enforced by alohad, never only by a client.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Smallest and largest PIN lengths any policy may configure (Windows Hello's range).
pub const PIN_LENGTH_FLOOR: usize = 4;
pub const PIN_LENGTH_CEILING: usize = 127;
/// Largest history and expiry a policy may configure (Windows Hello's ranges).
pub const HISTORY_CEILING: usize = 50;
pub const EXPIRY_DAYS_CEILING: u32 = 730;

/// What a policy says about one class of characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CharRule {
    /// The class may appear.
    Allow,
    /// At least one character of the class must appear.
    Require,
    /// No character of the class may appear.
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CharClass {
    Digits,
    Lowercase,
    Uppercase,
    Special,
}

impl CharClass {
    const ALL: [CharClass; 4] = [
        CharClass::Digits,
        CharClass::Lowercase,
        CharClass::Uppercase,
        CharClass::Special,
    ];

    fn of(c: char) -> Option<CharClass> {
        match c {
            '0'..='9' => Some(CharClass::Digits),
            'a'..='z' => Some(CharClass::Lowercase),
            'A'..='Z' => Some(CharClass::Uppercase),
            // Windows Hello's special set: printable ASCII punctuation and the space.
            ' '..='~' => Some(CharClass::Special),
            _ => None,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            CharClass::Digits => "a digit",
            CharClass::Lowercase => "a lowercase letter",
            CharClass::Uppercase => "an uppercase letter",
            CharClass::Special => "a special character",
        }
    }
}

/// `[pin]` in aloha.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PinPolicy {
    /// Fewest characters a PIN may have (4–127). Default 6.
    pub min_length: usize,
    /// Most characters a PIN may have (4–127). Default 127.
    pub max_length: usize,
    /// Digits 0–9: allow | require | deny. Default allow.
    pub digits: CharRule,
    /// Letters a–z. Default allow.
    pub lowercase: CharRule,
    /// Letters A–Z. Default allow.
    pub uppercase: CharRule,
    /// ASCII punctuation and space. Default allow.
    pub special: CharRule,
    /// How many previous PINs may not be reused (0–50; 0 keeps none). Default 0.
    pub history: usize,
    /// Days after which a PIN must be changed (0–730; 0 = never). Default 0.
    pub expiry_days: u32,
    /// Refuse PINs made of one repeated character or a straight run such as 123456. Default true.
    pub reject_trivial: bool,
}

impl Default for PinPolicy {
    fn default() -> Self {
        PinPolicy {
            min_length: 6,
            max_length: PIN_LENGTH_CEILING,
            digits: CharRule::Allow,
            lowercase: CharRule::Allow,
            uppercase: CharRule::Allow,
            special: CharRule::Allow,
            history: 0,
            expiry_days: 0,
            reject_trivial: true,
        }
    }
}

/// Why a PIN was refused: one sentence naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyViolation {
    TooShort { min: usize },
    TooLong { max: usize },
    UnsupportedCharacter,
    Missing { class: CharClass },
    Denied { class: CharClass },
    Trivial,
    Reused { history: usize },
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyViolation::TooShort { min } => {
                write!(f, "The PIN is too short: it needs at least {min} characters.")
            }
            PolicyViolation::TooLong { max } => {
                write!(f, "The PIN is too long: it may have at most {max} characters.")
            }
            PolicyViolation::UnsupportedCharacter => f.write_str(
                "The PIN may only contain ASCII letters, digits, punctuation and spaces.",
            ),
            PolicyViolation::Missing { class } => {
                write!(f, "The PIN must contain {}.", class.noun())
            }
            PolicyViolation::Denied { class } => {
                write!(f, "The PIN may not contain {}.", class.noun())
            }
            PolicyViolation::Trivial => f.write_str(
                "The PIN is too easy to guess: it may not be one repeated character or a straight run such as 123456.",
            ),
            PolicyViolation::Reused { history } => write!(
                f,
                "The PIN was used recently: it may not repeat any of your last {history} PINs."
            ),
        }
    }
}

impl PinPolicy {
    fn rule(&self, class: CharClass) -> CharRule {
        match class {
            CharClass::Digits => self.digits,
            CharClass::Lowercase => self.lowercase,
            CharClass::Uppercase => self.uppercase,
            CharClass::Special => self.special,
        }
    }

    /// Check the policy itself (at config load): ranges and satisfiability.
    pub fn validate(&self) -> Result<(), String> {
        let range = PIN_LENGTH_FLOOR..=PIN_LENGTH_CEILING;
        if !range.contains(&self.min_length) {
            return Err(format!(
                "pin.min_length = {} is outside {PIN_LENGTH_FLOOR}..={PIN_LENGTH_CEILING}",
                self.min_length
            ));
        }
        if !range.contains(&self.max_length) {
            return Err(format!(
                "pin.max_length = {} is outside {PIN_LENGTH_FLOOR}..={PIN_LENGTH_CEILING}",
                self.max_length
            ));
        }
        if self.min_length > self.max_length {
            return Err(format!(
                "pin.min_length = {} is larger than pin.max_length = {}",
                self.min_length, self.max_length
            ));
        }
        if self.history > HISTORY_CEILING {
            return Err(format!(
                "pin.history = {} is larger than {HISTORY_CEILING}",
                self.history
            ));
        }
        if self.expiry_days > EXPIRY_DAYS_CEILING {
            return Err(format!(
                "pin.expiry_days = {} is larger than {EXPIRY_DAYS_CEILING}",
                self.expiry_days
            ));
        }
        let allowed = CharClass::ALL
            .iter()
            .filter(|c| self.rule(**c) != CharRule::Deny)
            .count();
        if allowed == 0 {
            return Err("pin: every character class is denied, so no PIN could be set".into());
        }
        let required = CharClass::ALL
            .iter()
            .filter(|c| self.rule(**c) == CharRule::Require)
            .count();
        if required > self.max_length {
            return Err(format!(
                "pin: {required} character classes are required but pin.max_length is {}",
                self.max_length
            ));
        }
        Ok(())
    }

    /// Check a candidate PIN against every rule but history (which needs the daemon's digests).
    pub fn check(&self, pin: &str) -> Result<(), PolicyViolation> {
        let mut seen = [false; 4];
        let mut length = 0usize;
        for c in pin.chars() {
            length += 1;
            let class = CharClass::of(c).ok_or(PolicyViolation::UnsupportedCharacter)?;
            seen[class as usize] = true;
        }
        if length < self.min_length {
            return Err(PolicyViolation::TooShort {
                min: self.min_length,
            });
        }
        if length > self.max_length {
            return Err(PolicyViolation::TooLong {
                max: self.max_length,
            });
        }
        for class in CharClass::ALL {
            match (self.rule(class), seen[class as usize]) {
                (CharRule::Deny, true) => return Err(PolicyViolation::Denied { class }),
                (CharRule::Require, false) => return Err(PolicyViolation::Missing { class }),
                _ => {}
            }
        }
        if self.reject_trivial && is_trivial(pin) {
            return Err(PolicyViolation::Trivial);
        }
        Ok(())
    }

    /// When a PIN set at `set_at` expires, if it ever does.
    pub fn expires_at(&self, set_at: u64) -> Option<u64> {
        (self.expiry_days > 0).then(|| set_at.saturating_add(u64::from(self.expiry_days) * 86_400))
    }
}

/// One repeated character, or a straight ascending or descending run (123456, 987654, abcdef).
fn is_trivial(pin: &str) -> bool {
    let bytes = pin.as_bytes();
    if bytes.len() < 2 {
        return true;
    }
    let same_class = bytes
        .iter()
        .all(|b| CharClass::of(char::from(*b)) == CharClass::of(char::from(bytes[0])));
    let step = i16::from(bytes[1]) - i16::from(bytes[0]);
    let constant_step = bytes
        .windows(2)
        .all(|w| i16::from(w[1]) - i16::from(w[0]) == step);
    constant_step && (step == 0 || (same_class && step.abs() == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PinPolicy {
        PinPolicy::default()
    }

    #[test]
    fn default_policy_accepts_a_decent_pin() {
        assert_eq!(policy().check("482915"), Ok(()));
        assert_eq!(policy().check("correct horse"), Ok(()));
    }

    #[test]
    fn length_limits() {
        assert_eq!(
            policy().check("48291"),
            Err(PolicyViolation::TooShort { min: 6 })
        );
        let p = PinPolicy {
            max_length: 8,
            ..policy()
        };
        assert_eq!(
            p.check("482915736"),
            Err(PolicyViolation::TooLong { max: 8 })
        );
        assert_eq!(p.check("48291573"), Ok(()));
    }

    #[test]
    fn character_classes() {
        let p = PinPolicy {
            digits: CharRule::Require,
            uppercase: CharRule::Require,
            special: CharRule::Deny,
            ..policy()
        };
        assert_eq!(
            p.check("abcxyz9"),
            Err(PolicyViolation::Missing {
                class: CharClass::Uppercase
            })
        );
        assert_eq!(
            p.check("abcXYZq"),
            Err(PolicyViolation::Missing {
                class: CharClass::Digits
            })
        );
        assert_eq!(
            p.check("abcXY9!"),
            Err(PolicyViolation::Denied {
                class: CharClass::Special
            })
        );
        assert_eq!(p.check("abcXY9q"), Ok(()));
        let digits_only = PinPolicy {
            lowercase: CharRule::Deny,
            uppercase: CharRule::Deny,
            special: CharRule::Deny,
            ..policy()
        };
        assert_eq!(
            digits_only.check("48291a"),
            Err(PolicyViolation::Denied {
                class: CharClass::Lowercase
            })
        );
    }

    #[test]
    fn non_ascii_is_refused() {
        assert_eq!(
            policy().check("4829155é"),
            Err(PolicyViolation::UnsupportedCharacter)
        );
        assert_eq!(
            policy().check("482915\t"),
            Err(PolicyViolation::UnsupportedCharacter)
        );
    }

    #[test]
    fn trivial_pins() {
        for pin in [
            "000000", "111111", "123456", "654321", "456789", "abcdef", "zyxwvu", "aaaaaa",
        ] {
            assert_eq!(policy().check(pin), Err(PolicyViolation::Trivial), "{pin}");
        }
        for pin in ["123457", "112233", "135790", "090807"] {
            assert_eq!(policy().check(pin), Ok(()), "{pin}");
        }
        let lax = PinPolicy {
            reject_trivial: false,
            ..policy()
        };
        assert_eq!(lax.check("123456"), Ok(()));
    }

    #[test]
    fn every_violation_is_one_sentence_naming_its_rule() {
        let cases = [
            (PolicyViolation::TooShort { min: 6 }, "at least 6"),
            (PolicyViolation::TooLong { max: 8 }, "at most 8"),
            (
                PolicyViolation::Missing {
                    class: CharClass::Digits,
                },
                "must contain a digit",
            ),
            (
                PolicyViolation::Denied {
                    class: CharClass::Special,
                },
                "may not contain a special",
            ),
            (PolicyViolation::Trivial, "123456"),
            (PolicyViolation::Reused { history: 5 }, "last 5 PINs"),
        ];
        for (v, needle) in cases {
            let text = v.to_string();
            assert!(text.contains(needle), "{text}");
            assert_eq!(text.matches(". ").count(), 0, "one sentence: {text}");
        }
    }

    #[test]
    fn validate_rejects_impossible_policies() {
        assert!(policy().validate().is_ok());
        assert!(
            PinPolicy {
                min_length: 3,
                ..policy()
            }
            .validate()
            .is_err()
        );
        assert!(
            PinPolicy {
                max_length: 128,
                ..policy()
            }
            .validate()
            .is_err()
        );
        assert!(
            PinPolicy {
                min_length: 10,
                max_length: 8,
                ..policy()
            }
            .validate()
            .is_err()
        );
        assert!(
            PinPolicy {
                history: 51,
                ..policy()
            }
            .validate()
            .is_err()
        );
        assert!(
            PinPolicy {
                expiry_days: 731,
                ..policy()
            }
            .validate()
            .is_err()
        );
        let none = PinPolicy {
            digits: CharRule::Deny,
            lowercase: CharRule::Deny,
            uppercase: CharRule::Deny,
            special: CharRule::Deny,
            ..policy()
        };
        assert!(none.validate().is_err());
    }

    #[test]
    fn expiry() {
        assert_eq!(policy().expires_at(1000), None);
        let p = PinPolicy {
            expiry_days: 2,
            ..policy()
        };
        assert_eq!(p.expires_at(1000), Some(1000 + 2 * 86_400));
    }
}
