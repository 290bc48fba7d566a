//! What aloha-presence and `aloha presence agent` both do on the bus: collect incoming method
//! calls in the receive callback and answer them outside it (a blocking call made inside
//! libdbus's dispatch would re-enter it), and build error replies.

use std::ffi::CString;
use std::sync::{Arc, Mutex, PoisonError};

use dbus::Message;
use dbus::strings::ErrorName;

/// Method calls received and not yet answered.
#[derive(Debug, Clone, Default)]
pub struct Inbox(Arc<Mutex<Vec<Message>>>);

impl Inbox {
    /// The receive callback (`start_receive` with `MatchRule::new_method_call()`), for any
    /// connection type.
    pub fn collector<C>(&self) -> impl FnMut(Message, &C) -> bool + Send + Sync + 'static {
        let inbox = self.0.clone();
        move |call, _| {
            inbox
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(call);
            true
        }
    }

    /// Everything received since the last call.
    pub fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A D-Bus error reply to `call`: `name` and one sentence.
pub fn error_reply(call: &Message, name: &str, text: &str) -> Message {
    // Every name passed here is a constant (aloha-presence's tests check them); a literal
    // stands behind them.
    let name = ErrorName::new(name.to_string())
        .unwrap_or_else(|_| ErrorName::from("org.freedesktop.DBus.Error.Failed"));
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    call.error(&name, &text)
}
