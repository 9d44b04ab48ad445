//! Background maintenance natively: a local task sleeps until the next wake-up time and runs
//! [`crate::maintenance::run`]; requests move the wake-up earlier through a shared [`Wakeup`]
//! (the native counterpart of the Durable Object alarm).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

use super::relay::NativeRelayClient;

/// When maintenance should next run, shared by the request path and the maintenance task.
#[derive(Debug, Default)]
pub struct Wakeup {
    at: Cell<Option<i64>>,
    changed: Notify,
}

impl Wakeup {
    /// Makes sure maintenance runs no later than `at` (ms since the epoch).
    pub fn schedule(&self, at: Option<i64>) {
        let Some(at) = at else { return };
        if self.at.get().is_none_or(|current| at < current) {
            self.at.set(Some(at));
            // A stored permit if the task is not waiting yet: the change is never missed.
            self.changed.notify_one();
        }
    }
}

/// The maintenance task: runs until the runtime stops.
pub(crate) async fn run_forever(shared: Rc<super::Shared>) {
    let (config, account, wakeup) = (&shared.config, shared.account.as_ref(), &shared.wakeup);
    loop {
        let Some(at) = wakeup.at.get() else {
            wakeup.changed.notified().await;
            continue;
        };
        let now = crate::maintenance::now_ms(account);
        if at > now {
            let wait = Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wakeup.changed.notified() => {}
            }
            continue;
        }
        wakeup.at.set(None);
        if let Ok(config) = config {
            let next = crate::maintenance::run(config, account, now, &NativeRelayClient).await;
            wakeup.schedule(next);
        }
    }
}
