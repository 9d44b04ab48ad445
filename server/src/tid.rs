//! Issuing TIDs (record keys, repository revisions) that only ever increase.

use crate::clock::Clock;
use crate::syntax::Tid;

/// TIDs carry a 53-bit microsecond timestamp.
const TIMESTAMP_MASK: u64 = (1 << 53) - 1;

/// Issues strictly increasing TIDs: the clock's microseconds, bumped past the last issued
/// one when the clock stands still or goes backwards, plus a 10-bit clock id fixed for the
/// generator's life.
#[derive(Debug, Clone)]
pub struct TidGenerator {
    clock_id: u16,
    /// Timestamp part of the last TID issued or seen; 0 before any.
    last_micros: u64,
}

impl TidGenerator {
    /// A generator with a random clock id.
    pub fn new() -> TidGenerator {
        let mut b = [0u8; 2];
        // Without randomness the clock id only loses its collision resistance across
        // writers; a single-user PDS has one writer, so 0 is a safe fallback.
        let _ = getrandom02::getrandom(&mut b);
        TidGenerator::with_clock_id(u16::from_le_bytes(b))
    }

    /// A generator with a given clock id (taken modulo 1024).
    pub fn with_clock_id(clock_id: u16) -> TidGenerator {
        TidGenerator {
            clock_id: clock_id & 0x3ff,
            last_micros: 0,
        }
    }

    /// The generator's clock id.
    pub fn clock_id(&self) -> u16 {
        self.clock_id
    }

    /// The next TID: greater than every TID this generator issued or was told about.
    pub fn next(&mut self, clock: &dyn Clock) -> Tid {
        let now = clock.now_micros() & TIMESTAMP_MASK;
        let micros = if now > self.last_micros {
            now
        } else {
            (self.last_micros + 1).min(TIMESTAMP_MASK)
        };
        self.last_micros = micros;
        Tid::from_parts(micros, self.clock_id)
    }

    /// Makes every later TID greater than `tid` (seed with the last revision on restart,
    /// so a server whose clock went backwards never issues a smaller rev).
    pub fn ensure_after(&mut self, tid: &Tid) {
        self.last_micros = self.last_micros.max(tid.timestamp_micros());
    }
}

impl Default for TidGenerator {
    fn default() -> TidGenerator {
        TidGenerator::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn strictly_increasing_when_clock_stalls_or_goes_back() {
        let clock = ManualClock::new(1_700_000_000_000_000);
        let mut gen = TidGenerator::with_clock_id(7);
        let mut prev = gen.next(&clock);
        for step in 0..1000u64 {
            match step % 3 {
                0 => {}                                     // stands still
                1 => clock.set(clock.now_micros() - 5_000), // goes backwards
                _ => clock.advance(3),
            }
            let tid = gen.next(&clock);
            assert!(tid > prev, "{tid} <= {prev}");
            assert!(tid.as_str() > prev.as_str());
            assert!(Tid::new(tid.as_str()).is_ok());
            assert_eq!(tid.clock_id(), 7);
            prev = tid;
        }
    }

    #[test]
    fn uses_the_clock_when_it_moves_forward() {
        let clock = ManualClock::new(1_700_000_000_000_000);
        let mut gen = TidGenerator::with_clock_id(1);
        assert_eq!(gen.next(&clock).timestamp_micros(), 1_700_000_000_000_000);
        clock.advance(1_000_000);
        assert_eq!(gen.next(&clock).timestamp_micros(), 1_700_000_001_000_000);
    }

    #[test]
    fn ensure_after_survives_restart_with_slow_clock() {
        // The previous run used a higher clock id and a clock an hour ahead.
        let last = Tid::from_parts(1_700_003_600_000_000, 1023);
        let clock = ManualClock::new(1_700_000_000_000_000);
        let mut gen = TidGenerator::with_clock_id(0);
        gen.ensure_after(&last);
        let a = gen.next(&clock);
        assert!(a > last);
        let b = gen.next(&clock);
        assert!(b > a);
        // Seeding with an older TID never moves the generator backwards.
        gen.ensure_after(&Tid::from_parts(5, 0));
        assert!(gen.next(&clock) > b);
    }

    #[test]
    fn random_clock_ids_fit_ten_bits() {
        for _ in 0..50 {
            assert!(TidGenerator::new().clock_id() < 1024);
        }
    }
}
