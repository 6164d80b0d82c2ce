//! One load per product however many requests miss it at once: the first miss starts the
//! load, every miss (the first included) awaits its result.
//!
//! The load runs on a task of its own, under a deadline, and removes its own entry when it
//! ends. So a request that gives up (its client went away, or the server's request timeout
//! fired) drops only its wait: the load still finishes or times out, frees its database
//! connection and leaves the map. Were the load polled by the requests themselves, the last
//! one to give up would leave it parked in the map for good, holding a pooled connection
//! (or its place in the pool's queue) that nothing would ever poll again.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt, Shared};

/// Why a shared load gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlightError {
    /// The load ran past its deadline and was stopped.
    #[error("the load took longer than {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// The load panicked (logged by the runtime); its waiters get this instead.
    #[error("the load panicked")]
    Panicked,
}

type Flight<T> = Shared<BoxFuture<'static, Result<T, FlightError>>>;

/// The flights in progress by product id, each with its number.
type Flights<T> = Arc<Mutex<HashMap<i64, (u64, Flight<T>)>>>;

/// In-flight loads by product id.
pub struct SingleFlight<T> {
    /// Each flight with a number, so a finished load removes its own entry, never a newer one.
    flights: Flights<T>,
    next: AtomicU64,
    deadline: Duration,
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Loads that each stop after `deadline`.
    pub fn new(deadline: Duration) -> Self {
        Self {
            flights: Arc::default(),
            next: AtomicU64::new(0),
            deadline,
        }
    }

    /// Runs `load` unless a load of `id` is in flight, in which case its result is shared.
    pub async fn run<F>(&self, id: i64, load: F) -> Result<T, FlightError>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let flight = {
            let mut flights = self.flights.lock().expect("the lock is never poisoned");
            match flights.get(&id) {
                Some((_, flight)) => flight.clone(),
                None => {
                    let number = self.next.fetch_add(1, Ordering::Relaxed);
                    let flight = self.start(id, number, load);
                    flights.insert(id, (number, flight.clone()));
                    flight
                }
            }
        };
        flight.await
    }

    /// Spawns the load; the returned future only watches it.
    fn start<F>(&self, id: i64, number: u64, load: F) -> Flight<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let deadline = self.deadline;
        // Removes the entry when the task ends, by returning or by panicking, before the
        // waiters see the result: a miss from then on starts a new load.
        let leave = Leave {
            flights: self.flights.clone(),
            id,
            number,
        };
        // In the span of the request that started it, so its database spans join that trace.
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let _leave = leave;
            tokio::time::timeout(deadline, load)
                .await
                .map_err(|_| FlightError::TimedOut(deadline))
        }));
        async move { task.await.unwrap_or(Err(FlightError::Panicked)) }
            .boxed()
            .shared()
    }

    /// Loads in flight now (for tests).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.flights
            .lock()
            .expect("the lock is never poisoned")
            .len()
    }
}

/// Takes a finished flight out of the map (unless a newer one of the same id took its place).
struct Leave<T> {
    flights: Flights<T>,
    id: i64,
    number: u64,
}

impl<T> Drop for Leave<T> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights
            .get(&self.id)
            .is_some_and(|(n, _)| *n == self.number)
        {
            flights.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn flights<T: Clone + Send + Sync + 'static>() -> Arc<SingleFlight<T>> {
        Arc::new(SingleFlight::new(Duration::from_secs(5)))
    }

    #[tokio::test]
    async fn concurrent_calls_share_one_load() {
        let flights = flights();
        let loads = Arc::new(AtomicUsize::new(0));
        let calls = (0..20).map(|_| {
            let (flights, loads) = (flights.clone(), loads.clone());
            tokio::spawn(async move {
                flights
                    .run(7, async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        42
                    })
                    .await
            })
        });
        for call in calls.collect::<Vec<_>>() {
            assert_eq!(call.await.unwrap(), Ok(42));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_later_call_loads_again() {
        let flights = flights();
        assert_eq!(flights.run(1, async { 1 }).await, Ok(1));
        assert_eq!(flights.run(1, async { 2 }).await, Ok(2));
    }

    #[tokio::test]
    async fn a_load_whose_only_waiter_gave_up_still_finishes_and_leaves() {
        let flights = flights();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (finished_tx, finished) = tokio::sync::oneshot::channel::<()>();
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(3, async move {
                        released.await.ok();
                        finished_tx.send(()).ok();
                        3
                    })
                    .await
            })
        };
        while flights.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        // The request is cancelled while the load waits (for a lock, a connection …).
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        release.send(()).unwrap();
        finished
            .await
            .expect("the load ran to its end with nobody waiting");
        tokio::time::timeout(Duration::from_secs(5), async {
            while flights.in_flight() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the finished load removed its entry");
        assert_eq!(flights.run(3, async { 4 }).await, Ok(4), "a new load runs");
    }

    #[tokio::test]
    async fn a_load_past_its_deadline_is_stopped_and_reported() {
        let flights = Arc::new(SingleFlight::new(Duration::from_millis(100)));
        let result = flights
            .run(5, async {
                std::future::pending::<()>().await;
                5
            })
            .await;
        assert_eq!(
            result,
            Err(FlightError::TimedOut(Duration::from_millis(100)))
        );
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_panicking_load_is_reported_to_its_waiters() {
        let flights = flights::<i32>();
        let result = flights.run(6, async { panic!("a bug in the load") }).await;
        assert_eq!(result, Err(FlightError::Panicked));
        assert_eq!(flights.in_flight(), 0);
    }
}
