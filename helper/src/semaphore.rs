//! A counting semaphore: at most N holders at once. Bounds how many Argon2id runs (software
//! vault, PIN-history digests; 64 MiB each) overlap, whatever the number of connections.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

#[derive(Debug)]
pub struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One slot, given back when dropped (also when its holder panics).
#[derive(Debug)]
pub struct Slot<'a> {
    slots: &'a Slots,
}

fn lock(m: &Mutex<usize>) -> MutexGuard<'_, usize> {
    // A counter has no invariant a panic could break.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Slots {
    /// `n` slots; at least one, so that waiting can always end.
    pub fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Wait for a free slot.
    pub fn acquire(&self) -> Slot<'_> {
        let mut free = self
            .freed
            .wait_while(lock(&self.free), |free| *free == 0)
            .unwrap_or_else(PoisonError::into_inner);
        *free -= 1;
        Slot { slots: self }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.slots.free) += 1;
        self.slots.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_holders_than_slots() {
        let slots = Arc::new(Slots::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (slots, inside, most) = (slots.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _slot = slots.acquire();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} at once");
        assert_eq!(*lock(&slots.free), 2, "every slot given back");
    }

    #[test]
    fn a_panicking_holder_gives_its_slot_back() {
        let slots = Arc::new(Slots::new(1));
        let s2 = slots.clone();
        let r = std::thread::spawn(move || {
            let _slot = s2.acquire();
            panic!("holder fails");
        })
        .join();
        assert!(r.is_err());
        let _again = slots.acquire();
        assert_eq!(Slots::new(0).free.lock().map(|f| *f).unwrap_or(0), 1);
    }
}
