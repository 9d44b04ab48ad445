//! The clock port: where "now" comes from. `SystemTime::now()` panics on wasm32, so the
//! Worker supplies its own clock (from `Date.now()`) and native code uses [`SystemClock`].

use std::cell::Cell;

/// A source of wall-clock time. No `Send` bound: Durable Object code is single-threaded.
pub trait Clock {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> u64;

    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64 {
        self.now_micros() / 1000
    }

    /// Whole seconds since the Unix epoch (JWT `iat`/`exp`).
    fn now_secs(&self) -> u64 {
        self.now_micros() / 1_000_000
    }
}

/// The operating system's clock (native builds only).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[cfg(not(target_arch = "wasm32"))]
impl Clock for SystemClock {
    fn now_micros(&self) -> u64 {
        // A clock set before 1970 reads as the epoch rather than failing.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }
}

/// A clock that reads whatever it was last set to: for tests and deterministic replays.
#[derive(Debug, Default)]
pub struct ManualClock {
    micros: Cell<u64>,
}

impl ManualClock {
    /// A clock standing at `micros`.
    pub fn new(micros: u64) -> ManualClock {
        ManualClock {
            micros: Cell::new(micros),
        }
    }

    /// Moves the clock to `micros` (backwards too).
    pub fn set(&self, micros: u64) {
        self.micros.set(micros);
    }

    /// Moves the clock forward by `micros`.
    pub fn advance(&self, micros: u64) {
        self.micros.set(self.micros.get().saturating_add(micros));
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> u64 {
        self.micros.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_micros() > 1_577_836_800_000_000);
        assert_eq!(ManualClock::new(2_500_000).now_secs(), 2);
    }
}
