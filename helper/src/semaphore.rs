//! A counting semaphore: at most N permits out at once. Bounds how many Argon2id runs (software
//! vault, PIN-history digests; 64 MiB each) overlap, whatever the number of connections.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

#[derive(Debug)]
pub struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One permit, given back when dropped (also when its holder panics).
#[derive(Debug)]
pub struct Permit<'a> {
    semaphore: &'a Semaphore,
}

fn lock(m: &Mutex<usize>) -> MutexGuard<'_, usize> {
    // A counter has no invariant a panic could break.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Semaphore {
    /// `n` permits; at least one, so that waiting can always end.
    pub fn new(n: usize) -> Semaphore {
        Semaphore {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Wait for a free permit.
    pub fn acquire(&self) -> Permit<'_> {
        let mut free = self
            .freed
            .wait_while(lock(&self.free), |free| *free == 0)
            .unwrap_or_else(PoisonError::into_inner);
        *free -= 1;
        Permit { semaphore: self }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *lock(&self.semaphore.free) += 1;
        self.semaphore.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_holders_than_permits() {
        let semaphore = Arc::new(Semaphore::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (semaphore, inside, most) = (semaphore.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _permit = semaphore.acquire();
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
        assert_eq!(*lock(&semaphore.free), 2, "every permit given back");
    }

    #[test]
    fn a_panicking_holder_gives_its_permit_back() {
        let semaphore = Arc::new(Semaphore::new(1));
        let s2 = semaphore.clone();
        let r = std::thread::spawn(move || {
            let _permit = s2.acquire();
            panic!("holder fails");
        })
        .join();
        assert!(r.is_err());
        let _again = semaphore.acquire();
        assert_eq!(Semaphore::new(0).free.lock().map(|f| *f).unwrap_or(0), 1);
    }
}
