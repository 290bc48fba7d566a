//! Failures every operation can meet: state it cannot use, and randomness it cannot get.

use aloha::protocol::{ErrorCode, Failure};

use crate::backend::SALT_LEN;
use crate::store::StoreError;

/// A state file alohad cannot use: corrupt ones say how an administrator gets the user going.
pub(super) fn store_failure(user: &str, e: StoreError) -> Failure {
    match e {
        StoreError::Corrupt { .. } => Failure::new(
            ErrorCode::StateCorrupt,
            format!(
                "{e}. PIN sign-in for {user} is refused until an administrator runs \
                 `aloha admin unlock --user {user}` (attempt counter) or `aloha pin reset` (container)."
            ),
        ),
        StoreError::Newer { .. } => Failure::new(
            ErrorCode::StateCorrupt,
            format!("{e}; until then {user} signs in with the password."),
        ),
        other => Failure::new(
            ErrorCode::Internal,
            format!("alohad could not use its state: {other}"),
        ),
    }
}

pub(super) fn random<const N: usize>() -> Result<[u8; N], Failure> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("no randomness: {e}")))?;
    Ok(bytes)
}

pub(super) fn random_salt() -> Result<[u8; SALT_LEN], Failure> {
    random()
}
