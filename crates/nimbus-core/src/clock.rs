//! The one wall-clock read the I/O edges share.
//!
//! Core logic never reads a clock: it takes `now` as an argument, so it is tested with chosen
//! times. The edges (stores, the event engine, the invoker) get `now` here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock now, unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
