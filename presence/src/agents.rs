//! Who answers for whom: each uid's registered agent (its bus connection and object), and the
//! questions open now — one per uid, a bounded number in all, so one user can neither stack
//! prompts on their own screen nor take every worker from the others.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Questions open at once, all users together.
pub const MAX_OPEN: usize = 32;

/// Where a user's agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAddress {
    /// The agent's unique connection name (":1.42"): never a well-known name another
    /// process could take over.
    pub bus_name: String,
    pub path: String,
}

#[derive(Debug, Default)]
struct State {
    agents: HashMap<u32, AgentAddress>,
    open: HashSet<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<Mutex<State>>);

/// One open question; closes when dropped.
#[derive(Debug)]
pub struct Turn {
    registry: Registry,
    uid: u32,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.registry.state().open.remove(&self.uid);
    }
}

/// Why a question cannot open now.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// This uid already has one open.
    Yours,
    /// [`MAX_OPEN`] are open.
    Full,
}

impl Registry {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; the data stays the best there is.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A newer agent of the same uid replaces the older one (a restarted agent, a new
    /// session): only that uid's own processes can register for it.
    pub fn register(&self, uid: u32, address: AgentAddress) {
        self.state().agents.insert(uid, address);
    }

    /// Remove `uid`'s agent if it is the one at `address` (a process unregisters only itself).
    pub fn unregister(&self, uid: u32, address: &AgentAddress) -> bool {
        let mut state = self.state();
        if state.agents.get(&uid) == Some(address) {
            state.agents.remove(&uid);
            true
        } else {
            false
        }
    }

    pub fn agent(&self, uid: u32) -> Option<AgentAddress> {
        self.state().agents.get(&uid).cloned()
    }

    pub fn open(&self, uid: u32) -> Result<Turn, Closed> {
        let mut state = self.state();
        if state.open.contains(&uid) {
            return Err(Closed::Yours);
        }
        if state.open.len() >= MAX_OPEN {
            return Err(Closed::Full);
        }
        state.open.insert(uid);
        Ok(Turn {
            registry: self.clone(),
            uid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(name: &str) -> AgentAddress {
        AgentAddress {
            bus_name: name.into(),
            path: "/org/aloha/PresenceAgent1".into(),
        }
    }

    #[test]
    fn agents_are_per_uid_and_only_the_registered_one_unregisters() {
        let r = Registry::default();
        r.register(1000, at(":1.1"));
        r.register(1001, at(":1.2"));
        assert_eq!(r.agent(1000), Some(at(":1.1")));
        // Bob's process cannot remove alice's agent, even naming it.
        assert!(!r.unregister(1001, &at(":1.1")));
        assert_eq!(r.agent(1000), Some(at(":1.1")));
        r.register(1000, at(":1.3"));
        assert!(
            !r.unregister(1000, &at(":1.1")),
            "the old one is gone already"
        );
        assert!(r.unregister(1000, &at(":1.3")));
        assert_eq!(r.agent(1000), None);
        assert_eq!(r.agent(1001), Some(at(":1.2")));
    }

    #[test]
    fn one_open_question_per_uid_and_a_bound_on_all() {
        let r = Registry::default();
        let turn = r.open(1000).unwrap();
        assert_eq!(r.open(1000).unwrap_err(), Closed::Yours);
        let _bob = r.open(1001).unwrap();
        drop(turn);
        let _again = r.open(1000).unwrap();
        let many: Vec<Turn> = (2000..2000 + MAX_OPEN as u32 - 2)
            .map(|uid| r.open(uid).unwrap())
            .collect();
        assert_eq!(r.open(5000).unwrap_err(), Closed::Full);
        drop(many);
        r.open(5000).unwrap();
    }
}
