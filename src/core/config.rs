//! The control block (the patent's Figure 3) and the ordered address space.
//!
//! Rust callers describe a pool with the typed [`PoolSpec`] builder and get a
//! [`Config`] from [`PoolSpec::build`]; a `Config` exists only after
//! validation. The Python binding instead parses each argument itself
//! (phase 1: types, IP and netmask syntax, wide integers so that
//! out-of-range input is reported, not truncated) into a [`WideSpec`];
//! [`Config::validate`] then checks the values in the reference model's
//! order (phase 2) and the relations between them (phase 3), and reports the
//! first failure, exactly as `natpool/reference/config.py` does.

use std::net::Ipv4Addr;

use crate::core::error::Error;
use crate::core::policy::{Order, Policy};

/// The largest subpool (and `initial_blocks`): block offsets are 32-bit.
pub(crate) const MAX_SUBPOOL_BLOCKS: u32 = u32::MAX;

/// A pool's configuration, typed, with defaults; [`build`](Self::build)
/// validates it into a [`Config`].
///
/// Defaults: netmask prefix 0 (every address of `first_ip..=last_ip` but
/// 0.0.0.0 and 255.255.255.255), ports 1024..=65535, `initial_blocks`
/// 1024, no `max_blocks` limit (the capacity is then the address count),
/// `subpool_blocks` equal to `initial_blocks`, `grow_threshold` 0; the
/// policies: `hold_down` 0 seconds, `order` FIFO, no seed (the operating
/// system's entropy seeds `Order::Random`).
///
/// ```
/// use std::net::Ipv4Addr;
/// use natpool::{Pool, PoolSpec};
///
/// let config = PoolSpec::new("slb", Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
///     .ports(20000, 20009)
///     .initial_blocks(4)
///     .subpool_blocks(8)
///     .build()?;
/// assert_eq!(config.address_count(), 20); // 2 IPs x 10 ports
/// let pool: Pool<&str> = Pool::new(config);
/// let lease = pool.allocate("client 192.0.2.7:51000")?;
/// assert_eq!((lease.ip, lease.port), (Ipv4Addr::new(10, 0, 0, 1), 20000));
/// pool.free(lease.handle)?;
/// # Ok::<(), natpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    name: String,
    first_ip: Ipv4Addr,
    last_ip: Ipv4Addr,
    prefix: u8,
    ports: (u16, u16),
    initial_blocks: u32,
    max_blocks: u64,
    subpool_blocks: Option<u32>,
    grow_threshold: u64,
    /// The policies as given, validated by `build`.
    policy: Policy,
}

impl PoolSpec {
    /// A pool named `name` over `first_ip..=last_ip`, with the defaults.
    pub fn new(name: impl Into<String>, first_ip: Ipv4Addr, last_ip: Ipv4Addr) -> Self {
        PoolSpec {
            name: name.into(),
            first_ip,
            last_ip,
            prefix: 0,
            ports: (1024, 65535),
            initial_blocks: 1024,
            max_blocks: u64::MAX,
            subpool_blocks: None,
            grow_threshold: 0,
            policy: Policy::default(),
        }
    }

    /// The subnet's prefix length (0..=32): for /30 and shorter its network
    /// and broadcast addresses are never handed out, and `first_ip` and
    /// `last_ip` must lie in one subnet.
    pub fn prefix(mut self, prefix: u8) -> Self {
        self.prefix = prefix;
        self
    }

    /// The ports of each IP, `low..=high` (within 1..=65535).
    pub fn ports(mut self, low: u16, high: u16) -> Self {
        self.ports = (low, high);
        self
    }

    /// Blocks in the first subpool (at least 1).
    pub fn initial_blocks(mut self, blocks: u32) -> Self {
        self.initial_blocks = blocks;
        self
    }

    /// The most blocks (live leases) the pool may hold at once.
    pub fn max_blocks(mut self, blocks: u64) -> Self {
        self.max_blocks = blocks;
        self
    }

    /// Blocks in each later subpool (at least 1).
    pub fn subpool_blocks(mut self, blocks: u32) -> Self {
        self.subpool_blocks = Some(blocks);
        self
    }

    /// Create one more subpool after an allocation that leaves at most this
    /// many free blocks.
    pub fn grow_threshold(mut self, free_blocks: u64) -> Self {
        self.grow_threshold = free_blocks;
        self
    }

    /// Seconds a freed block is held before reuse by default (finite, `>= 0`).
    pub fn hold_down(mut self, seconds: f64) -> Self {
        self.policy.hold_down = seconds;
        self
    }

    /// Which free block of a subpool an allocation takes.
    pub fn order(mut self, order: Order) -> Self {
        self.policy.order = order;
        self
    }

    /// The seed of `Order::Random`'s generator.
    pub fn seed(mut self, seed: u64) -> Self {
        self.policy.seed = Some(seed);
        self
    }

    /// At most `quota` (at least 1) live-or-held leases per client.
    pub fn client_quota(mut self, quota: u64) -> Self {
        self.policy.client_quota = Some(quota);
        self
    }

    /// All live leases of a client on one IP while it has a free address.
    pub fn paired(mut self, paired: bool) -> Self {
        self.policy.paired = paired;
        self
    }

    /// Port blocks of `addresses` (1 to the ports of one IP) per client.
    pub fn client_block(mut self, addresses: u32) -> Self {
        self.policy.client_block = Some(addresses);
        self
    }

    /// The most block events kept for `Pool::events` (default 65,536).
    pub fn event_queue(mut self, events: u64) -> Self {
        self.policy.event_queue = events;
        self
    }

    /// Validate the spec; the error names the first offending field.
    pub fn build(self) -> Result<Config, Error> {
        let mut config = Config::validate(WideSpec {
            name: self.name,
            first_ip: u32::from(self.first_ip),
            last_ip: u32::from(self.last_ip),
            prefix: self.prefix,
            ports: (i128::from(self.ports.0), i128::from(self.ports.1)),
            initial_blocks: i128::from(self.initial_blocks),
            max_blocks: i128::from(self.max_blocks),
            subpool_blocks: self.subpool_blocks.map(i128::from),
            grow_threshold: i128::from(self.grow_threshold),
        })?;
        // The policies in the reference model's order, each checked.
        let given = self.policy;
        config.policy.set_hold_down(given.hold_down)?;
        config.policy.order = given.order;
        config.policy.seed = given.seed;
        config
            .policy
            .set_client_quota(given.client_quota.map(i128::from))?;
        config.policy.paired = given.paired;
        config.set_client_block(given.client_block.map(i128::from))?;
        config
            .policy
            .set_event_queue(i128::from(given.event_queue))?;
        Ok(config)
    }
}

/// A pool's configuration as the binding parsed it, before validation.
/// Integers are wide so that out-of-range input is reported, not truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WideSpec {
    pub name: String,
    pub first_ip: u32,
    pub last_ip: u32,
    /// Netmask prefix length, 0..=32.
    pub prefix: u8,
    pub ports: (i128, i128),
    pub initial_blocks: i128,
    pub max_blocks: i128,
    /// `None`: the same as `initial_blocks`.
    pub subpool_blocks: Option<i128>,
    pub grow_threshold: i128,
}

/// The validated control block and the address space it defines: every
/// (ip, port) with ip in the usable part of `first_ip..=last_ip` and port in
/// `ports`, ordered by ip, then port, and numbered from 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    name: String,
    first_ip: u32,
    last_ip: u32,
    prefix: u8,
    port_low: u16,
    port_high: u16,
    initial_blocks: u32,
    max_blocks: u64,
    subpool_blocks: u32,
    grow_threshold: u64,
    /// First IP handed out (the subnet's network address is left out for /30 and shorter).
    usable_first: u32,
    /// Last IP handed out (the broadcast address is left out for /30 and shorter).
    usable_last: u32,
    address_count: u64,
    /// `min(max_blocks, address_count)`.
    capacity: u64,
    /// Hold-down, reuse order, seed: validated after the rest.
    pub(crate) policy: Policy,
}

/// Parse a dotted-quad IPv4 address the way Python's `ipaddress` does:
/// four decimal octets of at most three digits, no leading zeros.
#[cfg_attr(not(feature = "python"), allow(dead_code))] // the binding's phase 1
pub(crate) fn parse_ipv4(text: &str) -> Option<u32> {
    let mut value: u32 = 0;
    let mut octets = 0;
    for part in text.split('.') {
        let bytes = part.as_bytes();
        if bytes.is_empty() || bytes.len() > 3 || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if bytes.len() > 1 && bytes[0] == b'0' {
            return None;
        }
        let octet: u32 = part.parse().ok()?;
        if octet > 255 {
            return None;
        }
        value = value << 8 | octet;
        octets += 1;
        if octets > 4 {
            return None;
        }
    }
    (octets == 4).then_some(value)
}

/// Parse a dotted netmask into its prefix length; non-contiguous masks are errors.
#[cfg_attr(not(feature = "python"), allow(dead_code))] // the binding's phase 1
pub(crate) fn parse_netmask(text: &str) -> Result<u8, Error> {
    let mask = parse_ipv4(text)
        .ok_or_else(|| Error::config("netmask", format!("{text:?} is not a netmask")))?;
    let prefix = mask.leading_ones() as u8;
    if mask != prefix_mask(prefix) {
        return Err(Error::config(
            "netmask",
            format!("{text:?} is not contiguous"),
        ));
    }
    Ok(prefix)
}

/// The mask of a prefix length (0..=32).
pub(crate) fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// Dotted-quad text of an address.
pub(crate) fn ip_text(ip: u32) -> String {
    std::net::Ipv4Addr::from(ip).to_string()
}

fn block_count(field: &'static str, value: i128) -> Result<u32, Error> {
    if value < 1 {
        return Err(Error::config(field, format!("{value} is less than 1")));
    }
    u32::try_from(value)
        .map_err(|_| Error::config(field, format!("{value} is above {MAX_SUBPOOL_BLOCKS}")))
}

fn saturate_u64(value: i128) -> u64 {
    u64::try_from(value.max(0)).unwrap_or(u64::MAX)
}

impl Config {
    /// Validate a spec (phases 2 and 3; see the module docs).
    pub(crate) fn validate(spec: WideSpec) -> Result<Config, Error> {
        if spec.prefix > 32 {
            return Err(Error::config(
                "netmask",
                format!("prefix length {} is outside 0..32", spec.prefix),
            ));
        }
        // Phase 2: ranges: name, ports, initial, max, subpool, threshold.
        if spec.name.is_empty() {
            return Err(Error::config("name", "must not be empty"));
        }
        let (low, high) = spec.ports;
        if !(1..=65535).contains(&low) || !(1..=65535).contains(&high) {
            return Err(Error::config(
                "ports",
                format!("({low}, {high}) is outside 1..65535"),
            ));
        }
        if low > high {
            return Err(Error::config(
                "ports",
                format!("({low}, {high}) is reversed"),
            ));
        }
        let initial_blocks = block_count("initial_blocks", spec.initial_blocks)?;
        if spec.max_blocks < spec.initial_blocks {
            return Err(Error::config(
                "max_blocks",
                format!("{} is less than initial_blocks", spec.max_blocks),
            ));
        }
        let subpool_blocks = match spec.subpool_blocks {
            Some(value) => block_count("subpool_blocks", value)?,
            None => initial_blocks,
        };
        if spec.grow_threshold < 0 {
            return Err(Error::config(
                "grow_threshold",
                format!("{} is less than 0", spec.grow_threshold),
            ));
        }

        // Phase 3: relations.
        let (first, last) = (spec.first_ip, spec.last_ip);
        if first > last {
            return Err(Error::config(
                "last_ip",
                format!("{} is below first_ip {}", ip_text(last), ip_text(first)),
            ));
        }
        let mask = prefix_mask(spec.prefix);
        if first & mask != last & mask {
            return Err(Error::config(
                "netmask",
                format!(
                    "first_ip and last_ip are not in one /{} subnet",
                    spec.prefix
                ),
            ));
        }
        let (mut usable_first, mut usable_last) = (i64::from(first), i64::from(last));
        if spec.prefix <= 30 {
            let network = i64::from(first & mask);
            let broadcast = i64::from(first & mask | !mask);
            usable_first = usable_first.max(network + 1);
            usable_last = usable_last.min(broadcast - 1);
        }
        if usable_first > usable_last {
            return Err(Error::config(
                "first_ip",
                "the range holds only network/broadcast addresses",
            ));
        }
        let (port_low, port_high) = (low as u16, high as u16);
        let ports_per_ip = u64::from(port_high - port_low) + 1;
        let address_count = (usable_last - usable_first + 1) as u64 * ports_per_ip;
        let max_blocks = saturate_u64(spec.max_blocks);
        Ok(Config {
            name: spec.name,
            first_ip: first,
            last_ip: last,
            prefix: spec.prefix,
            port_low,
            port_high,
            initial_blocks,
            max_blocks,
            subpool_blocks,
            grow_threshold: saturate_u64(spec.grow_threshold),
            usable_first: usable_first as u32,
            usable_last: usable_last as u32,
            address_count,
            capacity: max_blocks.min(address_count),
            policy: Policy::default(),
        })
    }

    /// Seconds a freed block is held by default.
    pub fn hold_down(&self) -> f64 {
        self.policy.hold_down
    }

    /// The reuse order within a subpool.
    pub fn order(&self) -> Order {
        self.policy.order
    }

    /// The seed of `Order::Random`'s generator, if one was given.
    pub fn seed(&self) -> Option<u64> {
        self.policy.seed
    }

    /// The per-client limit of live-or-held leases.
    pub fn client_quota(&self) -> Option<u64> {
        self.policy.client_quota
    }

    /// Whether a client's live leases stay on one IP while they can.
    pub fn paired(&self) -> bool {
        self.policy.paired
    }

    /// The size of a client's port block, if clients get blocks.
    pub fn client_block(&self) -> Option<u32> {
        self.policy.client_block
    }

    /// The bound of the block log.
    pub fn event_queue(&self) -> u64 {
        self.policy.event_queue
    }

    /// Set `client_block` (checked against the ports of one IP).
    pub(crate) fn set_client_block(&mut self, block: Option<i128>) -> Result<(), Error> {
        let per_ip = self.ports_per_ip();
        self.policy.set_client_block(block, per_ip)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first IP of the range as given.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first_ip)
    }

    /// The last IP of the range as given.
    pub fn last_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last_ip)
    }

    /// The netmask's prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix))
    }

    /// The ports of each IP, `(low, high)`.
    pub fn ports(&self) -> (u16, u16) {
        (self.port_low, self.port_high)
    }

    /// Blocks in the first subpool.
    pub fn initial_blocks(&self) -> u32 {
        self.initial_blocks
    }

    /// The limit on blocks as given.
    pub fn max_blocks(&self) -> u64 {
        self.max_blocks
    }

    /// Blocks in each later subpool (`initial_blocks` unless set).
    pub fn subpool_blocks(&self) -> u32 {
        self.subpool_blocks
    }

    /// The free-block threshold for growing ahead of need.
    pub fn grow_threshold(&self) -> u64 {
        self.grow_threshold
    }

    /// How many (ip, port) addresses the pool's address space has.
    pub fn address_count(&self) -> u64 {
        self.address_count
    }

    /// The most leases live at once: `min(max_blocks, address_count)`.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn ports_per_ip(&self) -> u64 {
        u64::from(self.port_high - self.port_low) + 1
    }

    /// The (ip, port) at `index` of the address space (`index < address_count`).
    pub(crate) fn address(&self, index: u64) -> (u32, u16) {
        let per_ip = self.ports_per_ip();
        let ip = self.usable_first + (index / per_ip) as u32;
        let port = self.port_low + (index % per_ip) as u16;
        (ip, port)
    }

    /// The index of (ip, port), or `None` when it is outside the address space.
    pub(crate) fn index(&self, ip: u32, port: u16) -> Option<u64> {
        if !(self.usable_first..=self.usable_last).contains(&ip)
            || !(self.port_low..=self.port_high).contains(&port)
        {
            return None;
        }
        Some(
            u64::from(ip - self.usable_first) * self.ports_per_ip()
                + u64::from(port - self.port_low),
        )
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn spec(first: &str, last: &str, prefix: u8) -> WideSpec {
        WideSpec {
            name: "t".into(),
            first_ip: parse_ipv4(first).unwrap(),
            last_ip: parse_ipv4(last).unwrap(),
            prefix,
            ports: (1024, 65535),
            initial_blocks: 4,
            max_blocks: 100,
            subpool_blocks: None,
            grow_threshold: 0,
        }
    }

    fn field(result: Result<Config, Error>) -> &'static str {
        match result {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn parses_ipv4_like_python() {
        assert_eq!(parse_ipv4("10.0.0.1"), Some(0x0A00_0001));
        assert_eq!(parse_ipv4("255.255.255.255"), Some(u32::MAX));
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "256.0.0.1",
            "1.2.3.-4",
            " 1.2.3.4",
            "1..2.3",
            "1.2.3.4 ",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parses_netmasks() {
        assert_eq!(parse_netmask("255.255.255.0"), Ok(24));
        assert_eq!(parse_netmask("0.0.0.0"), Ok(0));
        assert_eq!(parse_netmask("255.255.255.255"), Ok(32));
        assert!(matches!(
            parse_netmask("255.0.255.0"),
            Err(Error::Config {
                field: "netmask",
                ..
            })
        ));
        assert!(matches!(
            parse_netmask("nope"),
            Err(Error::Config {
                field: "netmask",
                ..
            })
        ));
    }

    #[test]
    fn address_space_leaves_out_network_and_broadcast() {
        let c = Config::validate(spec("10.0.0.0", "10.0.0.255", 24)).unwrap();
        assert_eq!(c.usable_first, parse_ipv4("10.0.0.1").unwrap());
        assert_eq!(c.usable_last, parse_ipv4("10.0.0.254").unwrap());
        assert_eq!(c.address_count, 254 * 64512);
        assert_eq!(c.capacity, 100);
        let c = Config::validate(spec("10.0.0.0", "10.0.0.1", 31)).unwrap();
        assert_eq!(c.address_count, 2 * 64512);
        let c = Config::validate(spec("10.0.0.7", "10.0.0.7", 32)).unwrap();
        assert_eq!(c.address_count, 64512);
    }

    #[test]
    fn index_and_address_are_inverse() {
        let mut s = spec("10.0.0.1", "10.0.0.3", 24);
        s.ports = (100, 102);
        let c = Config::validate(s).unwrap();
        for i in 0..c.address_count {
            let (ip, port) = c.address(i);
            assert_eq!(c.index(ip, port), Some(i));
        }
        assert_eq!(c.index(parse_ipv4("10.0.0.4").unwrap(), 100), None);
        assert_eq!(c.index(parse_ipv4("10.0.0.1").unwrap(), 103), None);
    }

    #[test]
    fn rejects_each_bad_value_naming_the_field() {
        let ok = spec("10.0.0.1", "10.0.0.9", 24);
        let with = |f: &dyn Fn(&mut WideSpec)| {
            let mut s = ok.clone();
            f(&mut s);
            Config::validate(s)
        };
        assert_eq!(field(with(&|s| s.name.clear())), "name");
        assert_eq!(field(with(&|s| s.ports = (0, 10))), "ports");
        assert_eq!(field(with(&|s| s.ports = (10, 65536))), "ports");
        assert_eq!(field(with(&|s| s.ports = (20, 10))), "ports");
        assert_eq!(field(with(&|s| s.initial_blocks = 0)), "initial_blocks");
        assert_eq!(
            field(with(&|s| s.initial_blocks = 1 << 32)),
            "initial_blocks"
        );
        assert_eq!(field(with(&|s| s.max_blocks = 3)), "max_blocks");
        assert_eq!(
            field(with(&|s| s.subpool_blocks = Some(0))),
            "subpool_blocks"
        );
        assert_eq!(field(with(&|s| s.grow_threshold = -1)), "grow_threshold");
        assert_eq!(
            field(with(&|s| std::mem::swap(&mut s.first_ip, &mut s.last_ip))),
            "last_ip"
        );
        assert_eq!(
            field(with(&|s| s.last_ip = parse_ipv4("10.0.1.1").unwrap())),
            "netmask"
        );
        assert_eq!(field(with(&|s| s.prefix = 33)), "netmask");
        let only_network = spec("10.0.0.0", "10.0.0.0", 24);
        assert_eq!(field(Config::validate(only_network)), "first_ip");
    }

    #[test]
    fn the_typed_spec_has_defaults_and_validates() {
        let ip = |text: &str| text.parse::<std::net::Ipv4Addr>().unwrap();
        let c = PoolSpec::new("d", ip("10.0.0.0"), ip("10.0.0.255"))
            .build()
            .unwrap();
        // Prefix 0 keeps every address of the range; ports 1024..=65535.
        assert_eq!(c.ports(), (1024, 65535));
        assert_eq!(c.address_count(), 256 * 64512);
        assert_eq!(c.capacity(), c.address_count());
        assert_eq!((c.initial_blocks(), c.subpool_blocks()), (1024, 1024));
        assert_eq!(c.grow_threshold(), 0);
        let c = PoolSpec::new("d", ip("10.0.0.0"), ip("10.0.0.255"))
            .prefix(24)
            .initial_blocks(4)
            .subpool_blocks(8)
            .build()
            .unwrap();
        assert_eq!(
            (c.first_ip(), c.netmask()),
            (ip("10.0.0.0"), ip("255.255.255.0"))
        );
        assert_eq!(c.address_count(), 254 * 64512);
        assert_eq!((c.initial_blocks(), c.subpool_blocks()), (4, 8));
        let bad = |spec: PoolSpec| field(spec.build());
        let spec = || PoolSpec::new("d", ip("10.0.0.1"), ip("10.0.0.2"));
        assert_eq!(bad(spec().ports(0, 5)), "ports");
        assert_eq!(bad(spec().ports(9, 5)), "ports");
        assert_eq!(bad(spec().initial_blocks(0)), "initial_blocks");
        assert_eq!(bad(spec().max_blocks(3)), "max_blocks");
        assert_eq!(bad(spec().subpool_blocks(0)), "subpool_blocks");
        assert_eq!(bad(spec().prefix(33)), "netmask");
        assert_eq!(
            bad(PoolSpec::new("", ip("10.0.0.1"), ip("10.0.0.2"))),
            "name"
        );
        assert_eq!(
            bad(PoolSpec::new("d", ip("10.0.0.2"), ip("10.0.0.1"))),
            "last_ip"
        );
    }

    #[test]
    fn first_failure_in_signature_order_wins() {
        let mut s = spec("10.0.0.9", "10.0.0.1", 24);
        s.name.clear();
        s.initial_blocks = 0;
        assert_eq!(field(Config::validate(s)), "name");
    }
}
