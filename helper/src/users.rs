//! Who a user name is: the system's user database (NSS), behind a trait for tests.

/// A user as the system knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
}

pub trait UserDb: Send + Sync {
    /// `Ok(None)` for a user that does not exist; `Err` when the database cannot be asked.
    fn by_name(&self, name: &str) -> Result<Option<UserInfo>, String>;
}

/// getpwnam(3), so LDAP/SSSD users work like local ones.
#[derive(Debug, Default)]
pub struct SystemUsers;

impl UserDb for SystemUsers {
    fn by_name(&self, name: &str) -> Result<Option<UserInfo>, String> {
        nix::unistd::User::from_name(name)
            .map(|u| {
                u.map(|u| UserInfo {
                    name: u.name,
                    uid: u.uid.as_raw(),
                })
            })
            .map_err(|e| format!("cannot look up user {name:?}: {}", e.desc()))
    }
}
