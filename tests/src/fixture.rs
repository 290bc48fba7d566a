//! One alohad per test, on the software vault or on a private swtpm.

use crate::daemon::{Backend, Daemon, Options};
use crate::swtpm::Swtpm;

/// The two key stores every end-to-end scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Software,
    Tpm,
}

/// A daemon and, for the TPM kind, its swtpm. Dropped in field order: the daemon stops before
/// its TPM.
#[derive(Debug)]
pub struct Fixture {
    pub daemon: Daemon,
    pub swtpm: Option<Swtpm>,
}

impl Fixture {
    pub fn start(kind: Kind, configure: impl FnOnce(&mut Options)) -> Fixture {
        let swtpm = (kind == Kind::Tpm).then(Swtpm::start);
        Fixture::on(swtpm, configure)
    }

    /// A daemon on this swtpm (started by the caller, e.g. with other DA parameters), or on
    /// the software vault for `None`.
    pub fn on(swtpm: Option<Swtpm>, configure: impl FnOnce(&mut Options)) -> Fixture {
        let backend = match &swtpm {
            Some(s) => Backend::Tpm(s.tcti()),
            None => Backend::Software,
        };
        let mut opts = Options::new(backend);
        configure(&mut opts);
        Fixture {
            daemon: Daemon::start(opts),
            swtpm,
        }
    }
}

/// Run a scenario `fn name(kind: Kind)` once per key store: `both!(name);`
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn software() {
                super::$name($crate::fixture::Kind::Software)
            }
            #[test]
            fn tpm() {
                super::$name($crate::fixture::Kind::Tpm)
            }
        }
    )*};
}
