//! The CPU permits: each one core's worth of decoding or encoding, handed out by priority.
//!
//! A seller sees a product's pictures once their first step is made (decoding, scaling, the
//! WebP ladder); the AVIF ladder only makes them smaller later, and costs about ten times as
//! much CPU. Handed out first come, first served, a burst of products would queue every
//! later image's first step behind the AVIF of the images before it. So a waiting first step
//! always goes before a waiting later step, and within a step the image that started first
//! goes first (its [`Ticket`]), so each image's widths finish together instead of every
//! image's widths finishing late. Work already running is never interrupted: an encode is
//! one libaom or libwebp call.
//!
//! tokio's semaphore is first come, first served and has no priorities, hence this small one:
//! a count of free permits and a heap of waiters, each woken by a one-shot channel that
//! carries its permit.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::oneshot;

/// Which step of an image the work is for; the first goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Decoding, scaling, the WebP ladder and the placeholders: what shows the image.
    First,
    /// The formats that follow (AVIF), and a retry's decoding for them.
    Later,
}

/// An image's place in line, taken when its processing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The permits of [`Cores::new`]'s count.
#[derive(Clone)]
pub struct Cores {
    state: Arc<Mutex<State>>,
}

struct State {
    free: usize,
    waiting: BinaryHeap<Reverse<Waiter>>,
    /// The next ticket, and the order among waiters of one step and ticket.
    next: u64,
}

struct Waiter {
    /// Step, then ticket, then the order of asking.
    rank: (Step, Ticket, u64),
    permit: oneshot::Sender<Permit>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.rank == other.rank
    }
}

impl Eq for Waiter {}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank.cmp(&other.rank)
    }
}

/// One core's worth of work; dropping it hands the core to the first waiter in rank.
pub struct Permit {
    state: Arc<Mutex<State>>,
    /// False for a permit that was never handed out (its waiter had left): dropping it
    /// releases nothing.
    held: bool,
}

/// [`Cores`] were dropped while waiting: the process is shutting down.
#[derive(Debug)]
pub struct Closed;

impl Cores {
    pub fn new(permits: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                free: permits,
                waiting: BinaryHeap::new(),
                next: 0,
            })),
        }
    }

    /// A place in line for an image about to be processed.
    pub fn ticket(&self) -> Ticket {
        let mut state = lock(&self.state);
        state.next += 1;
        Ticket(state.next)
    }

    /// A permit, at once when one is free, else when every waiter ranked before this one
    /// has had one.
    pub async fn acquire(&self, step: Step, ticket: Ticket) -> Result<Permit, Closed> {
        let permit = {
            let mut state = lock(&self.state);
            if state.free > 0 {
                state.free -= 1;
                return Ok(Permit {
                    state: self.state.clone(),
                    held: true,
                });
            }
            let (sender, permit) = oneshot::channel();
            state.next += 1;
            let rank = (step, ticket, state.next);
            state.waiting.push(Reverse(Waiter {
                rank,
                permit: sender,
            }));
            permit
        };
        // A permit sent but never received (this future dropped) is dropped with the
        // channel, which releases it again.
        permit.await.map_err(|_| Closed)
    }

    /// Whether a first step waits for a core now.
    pub fn first_step_waiting(&self) -> bool {
        lock(&self.state)
            .waiting
            .iter()
            .any(|Reverse(w)| w.rank.0 == Step::First && !w.permit.is_closed())
    }

    /// Permits free now.
    #[cfg(test)]
    fn free(&self) -> usize {
        lock(&self.state).free
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let mut state = lock(&self.state);
        while let Some(Reverse(waiter)) = state.waiting.pop() {
            let permit = Permit {
                state: self.state.clone(),
                held: true,
            };
            match waiter.permit.send(permit) {
                Ok(()) => return,
                // That waiter left: the next one.
                Err(mut unsent) => unsent.held = false,
            }
        }
        state.free += 1;
    }
}

/// The state, even after a panic elsewhere while it was locked: no step above leaves it
/// half-changed.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::{future::Future, pin::Pin};

    use futures_util::FutureExt;

    use super::*;

    type Waiting = Pin<Box<dyn Future<Output = Result<Permit, Closed>> + Send>>;

    /// Asks for a permit and returns the request, registered in line.
    fn ask(cores: &Cores, step: Step, ticket: Ticket) -> Waiting {
        let cores = cores.clone();
        let mut waiting: Waiting = Box::pin(async move { cores.acquire(step, ticket).await });
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "no permit should be free"
        );
        waiting
    }

    #[test]
    fn a_waiting_first_step_goes_before_later_steps_that_asked_earlier() {
        let cores = Cores::new(1);
        let (early, late) = (cores.ticket(), cores.ticket());
        let running = cores.acquire(Step::First, early).now_or_never().unwrap();
        let mut avif = ask(&cores, Step::Later, early);
        assert!(!cores.first_step_waiting());
        let mut webp = ask(&cores, Step::First, late);
        assert!(cores.first_step_waiting());
        drop(running);
        let webp = (&mut webp).now_or_never().expect("the first step is woken");
        assert!(!cores.first_step_waiting());
        assert!((&mut avif).now_or_never().is_none());
        drop(webp);
        assert!((&mut avif).now_or_never().is_some());
    }

    #[test]
    fn within_a_step_the_image_that_started_first_goes_first() {
        let cores = Cores::new(1);
        let (early, late) = (cores.ticket(), cores.ticket());
        let running = cores.acquire(Step::Later, early).now_or_never().unwrap();
        let mut later_image = ask(&cores, Step::Later, late);
        let mut earlier_image = ask(&cores, Step::Later, early);
        drop(running);
        let permit = (&mut earlier_image).now_or_never().expect("woken");
        assert!((&mut later_image).now_or_never().is_none());
        drop(permit);
        assert!((&mut later_image).now_or_never().is_some());
    }

    #[test]
    fn a_waiter_that_left_takes_no_permit_with_it() {
        let cores = Cores::new(1);
        let ticket = cores.ticket();
        let running = cores.acquire(Step::First, ticket).now_or_never().unwrap();
        // Left before its turn.
        drop(ask(&cores, Step::First, ticket));
        // Woken with a permit, then dropped before it ran.
        let woken = ask(&cores, Step::First, ticket);
        drop(running);
        assert_eq!(cores.free(), 0, "the permit went to the waiter");
        drop(woken);
        assert_eq!(cores.free(), 1, "and came back with its channel");
        let again = cores.acquire(Step::Later, ticket).now_or_never();
        assert!(matches!(again, Some(Ok(_))));
    }

    #[test]
    fn permits_are_counted_back_when_nobody_waits() {
        let cores = Cores::new(2);
        let ticket = cores.ticket();
        let a = cores.acquire(Step::First, ticket).now_or_never().unwrap();
        let b = cores.acquire(Step::Later, ticket).now_or_never().unwrap();
        assert_eq!(cores.free(), 0);
        drop((a, b));
        assert_eq!(cores.free(), 2);
    }
}
