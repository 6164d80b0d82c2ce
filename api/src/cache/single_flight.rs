//! One load per product however many requests miss it at once: the first miss starts the
//! load, the others await the same shared future.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};

use futures_util::future::{BoxFuture, FutureExt, Shared};

type Flight = Shared<BoxFuture<'static, Arc<dyn std::any::Any + Send + Sync>>>;

/// In-flight loads by product id.
#[derive(Default)]
pub struct SingleFlight {
    flights: Mutex<HashMap<i64, Flight>>,
}

impl SingleFlight {
    /// Runs `load` unless a load of `id` is in flight, in which case its result is shared.
    pub async fn run<T, F>(&self, id: i64, load: F) -> T
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let flight = {
            let mut flights = self.flights.lock().expect("the lock is never poisoned");
            flights
                .entry(id)
                .or_insert_with(|| {
                    let erased: BoxFuture<'static, Arc<dyn std::any::Any + Send + Sync>> =
                        async move { Arc::new(load.await) as Arc<dyn std::any::Any + Send + Sync> }
                            .boxed();
                    erased.shared()
                })
                .clone()
        };
        let result = flight.clone().await;
        // The first to finish removes the flight; a later miss starts a new load.
        {
            let mut flights = self.flights.lock().expect("the lock is never poisoned");
            if flights.get(&id).is_some_and(|f| f.ptr_eq(&flight)) {
                flights.remove(&id);
            }
        }
        result
            .downcast_ref::<T>()
            .cloned()
            .expect("one id is only ever loaded with one result type")
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    #[tokio::test]
    async fn concurrent_calls_share_one_load() {
        let flights = Arc::new(SingleFlight::default());
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
            assert_eq!(call.await.unwrap(), 42);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_later_call_loads_again() {
        let flights = SingleFlight::default();
        assert_eq!(flights.run(1, async { 1 }).await, 1);
        assert_eq!(flights.run(1, async { 2 }).await, 2);
    }
}
