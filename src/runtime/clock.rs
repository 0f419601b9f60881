//! The real clocks handed to cores that need time while they block: the HTTP
//! directory store (breaker, cache, backoff, deadlines) runs on worker
//! threads and reads time only through the [`Clock`] given here.
//!
//! - Owns: the monotonic origin of its readings.
//! - Never: is used by a state machine core (those take `now` as a parameter).

use std::time::{Duration, Instant};

use crate::directory::Clock;

/// Monotonic milliseconds since this clock was made, and real sleeping.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}
