//! The node's memory budget: what every function's memory on this node may add up to, across
//! both runtimes. A wasm store charges its linear memories as they grow; a process sandbox
//! charges its `memory_mb` for as long as it lives. A charge that does not fit is refused (the
//! caller decides what that means: a denied growth, an evicted idle sandbox, a 429); nothing
//! here waits or reads a clock. A tenant's share ([`MemoryBudget::share`]) is a budget inside
//! the node's: a charge must fit both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A node-wide memory budget, shared by `Arc`.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    /// The budget this one is a share of: every charge is charged there too.
    parent: Option<Arc<MemoryBudget>>,
}

impl MemoryBudget {
    /// A budget of `limit_bytes`.
    pub fn new(limit_bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            limit: limit_bytes,
            used: AtomicU64::new(0),
            parent: None,
        })
    }

    /// A share of `parent` of at most `limit_bytes`: a charge fits when it fits both.
    pub fn share(parent: &Arc<Self>, limit_bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            limit: limit_bytes,
            used: AtomicU64::new(0),
            parent: Some(parent.clone()),
        })
    }

    /// Whether `bytes` more fit this budget itself (a share's parent aside).
    pub fn has_room_for(&self, bytes: u64) -> bool {
        self.used()
            .checked_add(bytes)
            .is_some_and(|after| after <= self.limit)
    }

    /// Whether this is a share of another budget.
    pub fn is_share(&self) -> bool {
        self.parent.is_some()
    }

    /// An unlimited budget (tests, tools).
    pub fn unlimited() -> Arc<Self> {
        Self::new(u64::MAX)
    }

    /// Charges `bytes` if they fit; the returned [`Charge`] gives them back when dropped.
    pub fn charge(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        self.try_add(bytes).then(|| Charge {
            budget: self.clone(),
            bytes,
        })
    }

    fn try_add(&self, bytes: u64) -> bool {
        let mine = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|after| *after <= self.limit)
            })
            .is_ok();
        match &self.parent {
            Some(parent) if mine && !parent.try_add(bytes) => {
                self.used.fetch_sub(bytes, Ordering::AcqRel);
                false
            }
            _ => mine,
        }
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(parent) = &self.parent {
            parent.give_back(bytes);
        }
    }

    /// The limit, bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Charged now, bytes.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// Bytes charged to a [`MemoryBudget`], given back on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Charge {
    /// Adds `bytes` to this charge if they fit.
    pub fn grow(&mut self, bytes: u64) -> bool {
        let ok = self.budget.try_add(bytes);
        if ok {
            self.bytes += bytes;
        }
        ok
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// Parses a size: `512MiB`, `16GiB`, `1.5G`, `300M`, or a plain number of MiB.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1u64 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "k" | "kb" | "kib" => 1 << 10,
        _ => return None,
    };
    (number.is_finite() && number > 0.0).then_some((number * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_fits_inside_its_parent_and_both_get_charges_back() {
        let node = MemoryBudget::new(100);
        let a = MemoryBudget::share(&node, 60);
        let b = MemoryBudget::share(&node, 60);
        let mut x = a.charge(50).expect("fits both");
        assert!(a.charge(20).is_none(), "a's share is 60");
        assert!(!a.has_room_for(20) && b.has_room_for(20));
        let y = b.charge(50).expect("fits b, and the node has 50 left");
        assert!(b.charge(1).is_none(), "the node is full");
        assert_eq!((a.used(), b.used(), node.used()), (50, 50, 100));
        assert!(!x.grow(1), "the node is full");
        assert_eq!(a.used(), 50, "a refused charge leaves the share as it was");
        drop(y);
        assert!(x.grow(10));
        assert_eq!((a.used(), node.used()), (60, 60));
        drop(x);
        assert_eq!((a.used(), b.used(), node.used()), (0, 0, 0));
        assert!(a.is_share() && !node.is_share());
    }

    #[test]
    fn charges_fit_or_are_refused_and_come_back_on_drop() {
        let b = MemoryBudget::new(100);
        let mut a = b.charge(60).expect("fits");
        assert!(b.charge(50).is_none(), "60 + 50 > 100");
        assert!(a.grow(40));
        assert!(!a.grow(1), "full");
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 0);
        assert!(b.charge(100).is_some());
        assert!(MemoryBudget::unlimited().charge(u64::MAX / 2).is_some());
    }

    #[test]
    fn sizes_parse_with_their_units() {
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("16GiB"), Some(16 << 30));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("300"), Some(300 << 20));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("12 parsecs"), None);
    }
}
