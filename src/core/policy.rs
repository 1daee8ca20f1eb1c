//! The pool's policies (issue 11): the reuse order within a subpool, the
//! hold-down of freed blocks, and the clock that times holds.
//!
//! The reference model specifies them (`natpool/reference/policy.py`,
//! `reuse.py`, `held.py`, `clients.py`); this module holds the validated
//! settings. The control block is validated first (`Config::validate`),
//! then each policy setting in the order `hold_down`, `order`, `seed`,
//! `client_quota`, `paired`, `client_block`, `event_queue`, as the
//! reference model does.

use std::fmt;
use std::sync::OnceLock;
use std::time::Instant;

use crate::core::error::Error;

/// Which free block of a subpool an allocation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Order {
    /// The block freed longest ago (a fresh subpool: ascending addresses).
    #[default]
    Fifo,
    /// The block freed most recently (a fresh subpool: ascending addresses).
    Lifo,
    /// A block drawn by the pool's SplitMix64 generator (a fresh subpool too).
    Random,
}

impl Order {
    /// `"fifo"`, `"lifo"` or `"random"`.
    pub fn name(self) -> &'static str {
        match self {
            Order::Fifo => "fifo",
            Order::Lifo => "lifo",
            Order::Random => "random",
        }
    }

    /// The order called `name`; a config error (field `order`) otherwise.
    pub fn from_name(name: &str) -> Result<Order, Error> {
        match name {
            "fifo" => Ok(Order::Fifo),
            "lifo" => Ok(Order::Lifo),
            "random" => Ok(Order::Random),
            _ => Err(Error::config(
                "order",
                format!("{name:?} is not one of 'fifo', 'lifo', 'random'"),
            )),
        }
    }
}

/// The validated policy settings of a pool (part of its `Config`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    pub hold_down: f64,
    pub order: Order,
    /// The seed given; `None`: seeded from entropy when the pool is made.
    pub seed: Option<u64>,
    /// Without a seed: the entropy its maker drew for the generator (the
    /// binding draws `os.urandom`, as the reference model); `None`: the
    /// core reads the operating system's. Not part of the configuration a
    /// pool reports or a snapshot writes.
    pub drawn_seed: Option<u64>,
    /// At most this many live-or-held leases per client.
    pub client_quota: Option<u64>,
    /// All live leases of a client on one IP (RFC 4787 REQ-2), while possible.
    pub paired: bool,
    /// Port blocks: each client's leases come from its own subpools of this size.
    pub client_block: Option<u32>,
    /// The most block events kept for `events()`.
    pub event_queue: u64,
}

/// The default bound of the block log.
const EVENT_QUEUE: u64 = 65_536;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            hold_down: 0.0,
            order: Order::Fifo,
            seed: None,
            drawn_seed: None,
            client_quota: None,
            paired: false,
            client_block: None,
            event_queue: EVENT_QUEUE,
        }
    }
}

/// Whether `seconds` is a usable hold: finite and not negative.
fn usable_hold(seconds: f64) -> bool {
    seconds.is_finite() && seconds >= 0.0
}

impl Policy {
    pub(crate) fn set_hold_down(&mut self, seconds: f64) -> Result<(), Error> {
        if !usable_hold(seconds) {
            return Err(Error::config(
                "hold_down",
                format!("{seconds} is not a finite number >= 0"),
            ));
        }
        self.hold_down = seconds;
        Ok(())
    }

    /// `None` or at least 1 (field `client_quota`); beyond `u64` saturates.
    pub(crate) fn set_client_quota(&mut self, quota: Option<i128>) -> Result<(), Error> {
        if let Some(quota) = quota {
            if quota < 1 {
                return Err(Error::config(
                    "client_quota",
                    format!("{quota} is less than 1"),
                ));
            }
        }
        self.client_quota = quota.map(|q| u64::try_from(q).unwrap_or(u64::MAX));
        Ok(())
    }

    /// `None` or from 1 to the ports of one IP (field `client_block`).
    pub(crate) fn set_client_block(
        &mut self,
        block: Option<i128>,
        ports_per_ip: u64,
    ) -> Result<(), Error> {
        if let Some(block) = block {
            if block < 1 || block > i128::from(ports_per_ip) {
                return Err(Error::config(
                    "client_block",
                    format!("{block} is outside 1..{ports_per_ip} (the ports of one IP)"),
                ));
            }
        }
        self.client_block = block.map(|b| b as u32);
        Ok(())
    }

    /// At least 0 (field `event_queue`); beyond `u64` saturates.
    pub(crate) fn set_event_queue(&mut self, events: i128) -> Result<(), Error> {
        if events < 0 {
            return Err(Error::config(
                "event_queue",
                format!("{events} is less than 0"),
            ));
        }
        self.event_queue = u64::try_from(events).unwrap_or(u64::MAX);
        Ok(())
    }

    /// Whether the pool keeps a state per client.
    pub(crate) fn tracks_clients(&self) -> bool {
        self.client_quota.is_some() || self.paired || self.client_block.is_some()
    }
}

/// A hold given to a free: finite and `>= 0`, else an argument error.
pub(crate) fn check_hold(seconds: f64) -> Result<f64, Error> {
    if usable_hold(seconds) {
        Ok(seconds)
    } else {
        Err(Error::Argument(format!(
            "hold: {seconds} is not a finite number >= 0"
        )))
    }
}

/// A clock value, checked: finite, else an argument error.
#[inline]
pub(crate) fn check_now(now: f64) -> Result<f64, Error> {
    if now.is_finite() {
        Ok(now)
    } else {
        Err(not_finite(now))
    }
}

/// `check_now`'s error (out of line: the clock reads are inlined).
#[cold]
#[inline(never)]
fn not_finite(now: f64) -> Error {
    Error::Argument(format!("clock: returned {now}, not a finite number"))
}

/// What times the holds, in seconds.
///
/// The pool reads it at the points the reference model specifies
/// (`natpool/reference/policy.py`): once per allocation call while any block
/// is held, once per free call whose hold is above 0.
pub enum Clock {
    /// The monotonic clock (CLOCK_MONOTONIC on Linux, `time.monotonic()`'s
    /// clock), in seconds from an origin fixed when it is first read.
    Monotonic,
    /// A caller's clock (simulations, tests). A value that is not finite
    /// makes the call that read it fail with [`Error::Argument`].
    Custom(Box<dyn Fn() -> f64 + Send + Sync>),
}

impl Clock {
    /// The time now; an argument error when a custom clock is not finite.
    pub fn now(&self) -> Result<f64, Error> {
        match self {
            Clock::Monotonic => {
                static ORIGIN: OnceLock<Instant> = OnceLock::new();
                Ok(ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64())
            }
            Clock::Custom(read) => check_now(read()),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clock::Monotonic => f.write_str("Clock::Monotonic"),
            Clock::Custom(_) => f.write_str("Clock::Custom(..)"),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn orders_by_name() {
        for order in [Order::Fifo, Order::Lifo, Order::Random] {
            assert_eq!(Order::from_name(order.name()), Ok(order));
        }
        assert!(matches!(
            Order::from_name("FIFO"),
            Err(Error::Config { field: "order", .. })
        ));
        assert_eq!(Order::default(), Order::Fifo);
    }

    #[test]
    fn holds_must_be_finite_and_not_negative() {
        let mut policy = Policy::default();
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(policy.set_hold_down(bad).is_err());
            assert!(matches!(check_hold(bad), Err(Error::Argument(_))));
        }
        policy.set_hold_down(2.5).unwrap();
        assert_eq!(policy.hold_down, 2.5);
        assert_eq!(check_hold(0.0), Ok(0.0));
    }

    #[test]
    fn clocks() {
        let monotonic = Clock::Monotonic;
        let a = monotonic.now().unwrap();
        let b = monotonic.now().unwrap();
        assert!(a >= 0.0 && b >= a);
        assert_eq!(Clock::Custom(Box::new(|| 7.5)).now(), Ok(7.5));
        assert!(matches!(
            Clock::Custom(Box::new(|| f64::NAN)).now(),
            Err(Error::Argument(_))
        ));
    }
}
