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
//!
//! The address space itself (ranges, exclusions, segments, the numbering)
//! is `space.rs`'s (`docs/shapes.md`); the legacy `first_ip`, `last_ip`,
//! `netmask` triple is one range of it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::core::error::Error;
use crate::core::policy::{Order, Policy};
use crate::core::space::{text, Family, Space, WideExclusion};

/// The largest subpool (and `initial_blocks`): block offsets are 32-bit.
pub(crate) const MAX_SUBPOOL_BLOCKS: u32 = u32::MAX;

/// An exclusion for [`PoolSpec::exclude`]: addresses never handed out,
/// not counted, and not numbered in the address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exclusion {
    first: IpAddr,
    last: IpAddr,
    ports: Option<(u16, u16)>,
}

impl Exclusion {
    /// Every port of the IPs `first..=last`.
    pub fn ips(first: impl Into<IpAddr>, last: impl Into<IpAddr>) -> Self {
        Exclusion {
            first: first.into(),
            last: last.into(),
            ports: None,
        }
    }

    /// Every port of one IP.
    pub fn ip(ip: impl Into<IpAddr>) -> Self {
        let ip = ip.into();
        Self::ips(ip, ip)
    }

    /// The ports `low..=high` (within the pool's ports) of one IP.
    pub fn ports(ip: impl Into<IpAddr>, low: u16, high: u16) -> Self {
        let ip = ip.into();
        Exclusion {
            first: ip,
            last: ip,
            ports: Some((low, high)),
        }
    }

    /// The exclusion as the validation takes it; an error (field
    /// `exclude`) when its two ends are of different families.
    fn wide(&self) -> Result<WideExclusion, Error> {
        let (family, first) = Family::of(self.first);
        let (last_family, last) = Family::of(self.last);
        if last_family != family {
            return Err(Error::config(
                "exclude",
                format!("{}-{} mixes IPv4 and IPv6", self.first, self.last),
            ));
        }
        Ok(WideExclusion {
            family,
            first,
            last,
            ports: self
                .ports
                .map(|(low, high)| (i128::from(low), i128::from(high))),
        })
    }
}

/// The addresses of a [`PoolSpec`]: the legacy range or a list of ranges.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Legacy {
        first: IpAddr,
        last: IpAddr,
        prefix: u8,
    },
    Ranges(Vec<(IpAddr, IpAddr)>),
}

/// A pool's configuration, typed, with defaults; [`build`](Self::build)
/// validates it into a [`Config`].
///
/// Defaults: netmask prefix 0 (every address of `first_ip..=last_ip` but
/// the subnet's network and broadcast addresses: 0.0.0.0 and
/// 255.255.255.255; IPv6: `::`), ports 1024..=65535, `initial_blocks`
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
/// assert_eq!((lease.ip, lease.port), (Ipv4Addr::new(10, 0, 0, 1).into(), 20000));
/// pool.free(lease.handle)?;
/// # Ok::<(), natpool::Error>(())
/// ```
///
/// Several ranges, less exclusions, IPv6 alike:
///
/// ```
/// use std::net::Ipv6Addr;
/// use natpool::{Exclusion, Pool, PoolSpec};
///
/// let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
/// let b: Ipv6Addr = "2001:db8::4".parse().unwrap();
/// let c: Ipv6Addr = "2001:db8:1::".parse().unwrap();
/// let config = PoolSpec::with_ranges("v6", [(a, b), (c, c)])
///     .ports(5000, 5001)
///     .exclude([Exclusion::ip("2001:db8::2".parse::<Ipv6Addr>().unwrap())])
///     .initial_blocks(4)
///     .build()?;
/// assert_eq!(config.address_count(), 4 * 2);
/// # Ok::<(), natpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    name: String,
    shape: Shape,
    exclude: Vec<Exclusion>,
    ports: (u16, u16),
    initial_blocks: u32,
    max_blocks: u64,
    subpool_blocks: Option<u32>,
    grow_threshold: u64,
    /// The policies as given, validated by `build`.
    policy: Policy,
}

impl PoolSpec {
    /// A pool named `name` over `first_ip..=last_ip` (both IPv4 or both
    /// IPv6), with the defaults.
    pub fn new(
        name: impl Into<String>,
        first_ip: impl Into<IpAddr>,
        last_ip: impl Into<IpAddr>,
    ) -> Self {
        Self::with_shape(
            name,
            Shape::Legacy {
                first: first_ip.into(),
                last: last_ip.into(),
                prefix: 0,
            },
        )
    }

    /// A pool named `name` over several ranges `(first, last)`, inclusive,
    /// in any order; touching ranges are merged, overlapping ones an error.
    pub fn with_ranges<A: Into<IpAddr>>(
        name: impl Into<String>,
        ranges: impl IntoIterator<Item = (A, A)>,
    ) -> Self {
        Self::with_shape(name, Shape::Ranges(Vec::new())).ranges(ranges)
    }

    fn with_shape(name: impl Into<String>, shape: Shape) -> Self {
        PoolSpec {
            name: name.into(),
            shape,
            exclude: Vec::new(),
            ports: (1024, 65535),
            initial_blocks: 1024,
            max_blocks: u64::MAX,
            subpool_blocks: None,
            grow_threshold: 0,
            policy: Policy::default(),
        }
    }

    /// Use these ranges `(first, last)` instead of the legacy range.
    pub fn ranges<A: Into<IpAddr>>(mut self, ranges: impl IntoIterator<Item = (A, A)>) -> Self {
        self.shape = Shape::Ranges(
            ranges
                .into_iter()
                .map(|(first, last)| (first.into(), last.into()))
                .collect(),
        );
        self
    }

    /// Leave these addresses out of the address space (added to any given
    /// before).
    pub fn exclude(mut self, exclusions: impl IntoIterator<Item = Exclusion>) -> Self {
        self.exclude.extend(exclusions);
        self
    }

    /// The subnet's prefix length (0..=32, IPv6 0..=128) of the legacy
    /// range: for /30 and shorter its network and broadcast addresses are
    /// never handed out (IPv6, /126 and shorter: the subnet-router anycast
    /// address), and `first_ip` and `last_ip` must lie in one subnet.
    pub fn prefix(mut self, prefix: u8) -> Self {
        if let Shape::Legacy { prefix: given, .. } = &mut self.shape {
            *given = prefix;
        }
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
        let shape = match self.shape {
            Shape::Legacy {
                first,
                last,
                prefix,
            } => WideShape::Legacy {
                first: Family::of(first),
                last: Family::of(last),
                netmask: Netmask::Prefix(prefix),
            },
            Shape::Ranges(ranges) => WideShape::Ranges(
                ranges
                    .iter()
                    .map(|&(first, last)| {
                        let (family, first) = Family::of(first);
                        let (last_family, last) = Family::of(last);
                        // An item whose ends differ in family mixes families.
                        (family, first, last_family, last)
                    })
                    .flat_map(|(family, first, last_family, last)| {
                        let mixed = (family != last_family).then_some((last_family, last, last));
                        std::iter::once((family, first, last)).chain(mixed)
                    })
                    .collect(),
            ),
        };
        let config = Config::validate(WideSpec {
            name: self.name,
            shape,
            exclude: self
                .exclude
                .iter()
                .map(Exclusion::wide)
                .collect::<Result<_, _>>()?,
            ports: (i128::from(self.ports.0), i128::from(self.ports.1)),
            initial_blocks: i128::from(self.initial_blocks),
            max_blocks: i128::from(self.max_blocks),
            subpool_blocks: self.subpool_blocks.map(i128::from),
            grow_threshold: i128::from(self.grow_threshold),
        })?;
        config.with_policy(self.policy)
    }
}

/// A netmask as the binding parsed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Netmask {
    /// A prefix length given as an int.
    Prefix(u8),
    /// A dotted IPv4 netmask (its prefix length): not for IPv6 addresses.
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // the binding's phase 1
    Dotted(u8),
}

impl Netmask {
    fn prefix(self) -> u8 {
        match self {
            Netmask::Prefix(prefix) | Netmask::Dotted(prefix) => prefix,
        }
    }
}

/// The addresses of a [`WideSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WideShape {
    /// `first_ip`, `last_ip`, `netmask`.
    Legacy {
        first: (Family, u128),
        last: (Family, u128),
        netmask: Netmask,
    },
    /// `ranges`: (family, first, last) per item, inclusive, usable bounds
    /// already applied to networks (phase 1).
    Ranges(Vec<(Family, u128, u128)>),
}

/// A pool's configuration as the binding parsed it, before validation.
/// Integers are wide so that out-of-range input is reported, not truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WideSpec {
    pub name: String,
    pub shape: WideShape,
    pub exclude: Vec<WideExclusion>,
    pub ports: (i128, i128),
    pub initial_blocks: i128,
    pub max_blocks: i128,
    /// `None`: the same as `initial_blocks`.
    pub subpool_blocks: Option<i128>,
    pub grow_threshold: i128,
}

/// The legacy range as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Legacy {
    first: u128,
    last: u128,
    prefix: u8,
}

/// The validated control block and the address space it defines (see
/// `space.rs`): the (ip, port) pairs of the ranges less the exclusions,
/// ordered by ip, then port, and numbered from 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    name: String,
    /// The legacy range as given; `None` for a pool of `ranges`.
    legacy: Option<Legacy>,
    space: Space,
    /// Whether exclusions were given.
    excludes: bool,
    initial_blocks: u32,
    max_blocks: u64,
    subpool_blocks: u32,
    grow_threshold: u64,
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
    if u128::from(mask) != prefix_mask(Family::V4, prefix) {
        return Err(Error::config(
            "netmask",
            format!("{text:?} is not contiguous"),
        ));
    }
    Ok(prefix)
}

/// The mask of a prefix length (0..=bits) of `family`.
pub(crate) fn prefix_mask(family: Family, prefix: u8) -> u128 {
    let bits = family.bits();
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    match u32::from(prefix) {
        0 => 0,
        prefix if prefix >= bits => all,
        prefix => all & !(all >> prefix),
    }
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

/// Phase 3 of the legacy form: the usable part of `first..=last` under the
/// netmask, as one range; `(family, range, legacy)`.
fn legacy_range(
    first: (Family, u128),
    last: (Family, u128),
    netmask: Netmask,
) -> Result<(Family, (u128, u128), Legacy), Error> {
    let (family, first) = first;
    let prefix = netmask.prefix();
    if last.0 != family {
        return Err(Error::config(
            "first_ip",
            format!(
                "first_ip is IPv{}, last_ip is IPv{}",
                family.number(),
                last.0.number()
            ),
        ));
    }
    let last = last.1;
    if family == Family::V6 && matches!(netmask, Netmask::Dotted(_)) {
        return Err(Error::config(
            "netmask",
            "a dotted netmask does not fit IPv6 addresses; give a prefix length",
        ));
    }
    if first > last {
        return Err(Error::config(
            "last_ip",
            format!(
                "{} is below first_ip {}",
                text(family, last),
                text(family, first)
            ),
        ));
    }
    let mask = prefix_mask(family, prefix);
    if first & mask != last & mask {
        return Err(Error::config(
            "netmask",
            format!("first_ip and last_ip are not in one /{prefix} subnet"),
        ));
    }
    let network = first & mask;
    let top = network | (!mask & prefix_mask(family, family.bits() as u8));
    let (mut usable_first, mut usable_last) = (first, last);
    match family {
        // Network and broadcast addresses, for /30 and shorter.
        Family::V4 if prefix <= 30 => {
            usable_first = usable_first.max(network + 1);
            usable_last = usable_last.min(top - 1);
        }
        // The subnet-router anycast address (all-zero host), for /126 and
        // shorter, as `ipaddress.IPv6Network.hosts()`.
        Family::V6 if prefix <= 126 => usable_first = usable_first.max(network + 1),
        _ => {}
    }
    if usable_first > usable_last {
        let which = match family {
            Family::V4 => "network/broadcast",
            Family::V6 => "subnet-router anycast",
        };
        return Err(Error::config(
            "first_ip",
            format!("the range holds only {which} addresses"),
        ));
    }
    let legacy = Legacy {
        first,
        last,
        prefix,
    };
    Ok((family, (usable_first, usable_last), legacy))
}

/// Phase 3 of the `ranges` form: one family, none reversed, none
/// overlapping; sorted and touching ones merged (field `ranges`).
fn normalised_ranges(items: &[(Family, u128, u128)]) -> Result<(Family, Vec<(u128, u128)>), Error> {
    let Some(&(family, _, _)) = items.first() else {
        return Err(Error::config("ranges", "no range given"));
    };
    for &(item_family, first, last) in items {
        if item_family != family {
            return Err(Error::config(
                "ranges",
                format!(
                    "{} is IPv{}, the first range is IPv{}: one family per pool",
                    text(item_family, first),
                    item_family.number(),
                    family.number()
                ),
            ));
        }
        if first > last {
            return Err(Error::config(
                "ranges",
                format!("{}-{} is reversed", text(family, first), text(family, last)),
            ));
        }
    }
    let mut sorted: Vec<(u128, u128)> = items.iter().map(|&(_, a, b)| (a, b)).collect();
    sorted.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(sorted.len());
    for (first, last) in sorted {
        match merged.last_mut() {
            Some(previous) if first <= previous.1 => {
                return Err(Error::config(
                    "ranges",
                    format!(
                        "{}-{} overlaps {}-{}",
                        text(family, first),
                        text(family, last),
                        text(family, previous.0),
                        text(family, previous.1)
                    ),
                ))
            }
            Some(previous) if first == previous.1 + 1 => previous.1 = last,
            _ => merged.push((first, last)),
        }
    }
    Ok((family, merged))
}

impl Config {
    /// Validate a spec (phases 2 and 3; see the module docs).
    pub(crate) fn validate(spec: WideSpec) -> Result<Config, Error> {
        if let WideShape::Legacy { first, netmask, .. } = &spec.shape {
            let bits = first.0.bits();
            if u32::from(netmask.prefix()) > bits {
                return Err(Error::config(
                    "netmask",
                    format!("prefix length {} is outside 0..{bits}", netmask.prefix()),
                ));
            }
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

        // Phase 3: relations: the ranges (or the legacy range), then the
        // exclusions, then the size of what is left.
        let ports = (low as u16, high as u16);
        let (legacy, family, ranges, count_field) = match spec.shape {
            WideShape::Legacy {
                first,
                last,
                netmask,
            } => {
                let (family, range, legacy) = legacy_range(first, last, netmask)?;
                (Some(legacy), family, vec![range], "first_ip")
            }
            WideShape::Ranges(items) => {
                let (family, ranges) = normalised_ranges(&items)?;
                (None, family, ranges, "ranges")
            }
        };
        let space = Space::new(family, ports, ranges, &spec.exclude, count_field)?;
        let excludes = !spec.exclude.is_empty();
        let max_blocks = saturate_u64(spec.max_blocks);
        let capacity = u64::try_from(space.address_count())
            .unwrap_or(u64::MAX)
            .min(max_blocks);
        Ok(Config {
            name: spec.name,
            legacy,
            space,
            excludes,
            initial_blocks,
            max_blocks,
            subpool_blocks,
            grow_threshold: saturate_u64(spec.grow_threshold),
            capacity,
            policy: Policy::default(),
        })
    }

    /// This configuration with the policies `given`, each checked, in the
    /// reference model's order (a typed spec's, a snapshot's).
    pub(crate) fn with_policy(mut self, given: Policy) -> Result<Config, Error> {
        self.policy.set_hold_down(given.hold_down)?;
        self.policy.order = given.order;
        self.policy.seed = given.seed;
        self.policy
            .set_client_quota(given.client_quota.map(i128::from))?;
        self.policy.paired = given.paired;
        self.set_client_block(given.client_block.map(i128::from))?;
        self.policy.set_event_queue(i128::from(given.event_queue))?;
        Ok(self)
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
        let per_ip = self.space.ports_per_ip();
        self.policy.set_client_block(block, per_ip)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address space.
    pub(crate) fn space(&self) -> &Space {
        &self.space
    }

    /// IPv4 or IPv6.
    pub(crate) fn family(&self) -> Family {
        self.space.family()
    }

    /// Whether the pool's addresses are IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.family() == Family::V6
    }

    /// The normalised ranges `(first, last)`, inclusive: sorted, touching
    /// ones merged, before exclusions (the legacy form: its usable bounds).
    pub fn ranges(&self) -> Vec<(IpAddr, IpAddr)> {
        let family = self.family();
        self.space
            .ranges()
            .iter()
            .map(|&(first, last)| (family.ip(first), family.ip(last)))
            .collect()
    }

    /// The first usable IP: the first of the normalised ranges.
    pub fn first_ip(&self) -> IpAddr {
        self.family().ip(self.space.ranges()[0].0)
    }

    /// The last usable IP: the last of the normalised ranges.
    pub fn last_ip(&self) -> IpAddr {
        let ranges = self.space.ranges();
        self.family().ip(ranges[ranges.len() - 1].1)
    }

    /// Whether the pool is the legacy range without exclusions.
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // the binding's store check
    pub(crate) fn is_legacy_shape(&self) -> bool {
        self.legacy.is_some() && !self.excludes
    }

    /// The legacy range as given, `(first_ip, last_ip, prefix)`; `None` for
    /// a pool of ranges.
    pub fn legacy(&self) -> Option<(IpAddr, IpAddr, u8)> {
        let family = self.family();
        self.legacy
            .map(|l| (family.ip(l.first), family.ip(l.last), l.prefix))
    }

    /// The netmask's prefix length (the legacy form).
    pub fn prefix(&self) -> Option<u8> {
        self.legacy.map(|l| l.prefix)
    }

    /// The netmask (the legacy form): dotted for IPv4, the IPv6 mask for IPv6.
    pub fn netmask(&self) -> Option<IpAddr> {
        let family = self.family();
        self.prefix().map(|prefix| match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(prefix_mask(family, prefix) as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(prefix_mask(family, prefix))),
        })
    }

    /// The ports of each IP, `(low, high)`.
    pub fn ports(&self) -> (u16, u16) {
        self.space.ports()
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
    pub fn address_count(&self) -> u128 {
        self.space.address_count()
    }

    /// The most leases live at once: `min(max_blocks, address_count)`.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The (ip, port) at `index` of the address space (`index < address_count`).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn address(&self, index: u128) -> (u128, u16) {
        self.space.address(index)
    }

    /// The index of (ip, port), or `None` when it is outside the address space.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn index(&self, ip: u128, port: u16) -> Option<u128> {
        self.space.index(ip, port)
    }

    /// The index of (ip, port) of an address of any family (`None` for
    /// another family's or one outside the space).
    #[inline]
    pub(crate) fn index_of(&self, ip: IpAddr, port: u16) -> Option<u128> {
        let (family, ip) = Family::of(ip);
        if family != self.family() {
            return None;
        }
        self.space.index(ip, port)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn v4(text: &str) -> (Family, u128) {
        (Family::V4, u128::from(parse_ipv4(text).unwrap()))
    }

    fn legacy(first: (Family, u128), last: (Family, u128), netmask: Netmask) -> WideSpec {
        WideSpec {
            name: "t".into(),
            shape: WideShape::Legacy {
                first,
                last,
                netmask,
            },
            exclude: Vec::new(),
            ports: (1024, 65535),
            initial_blocks: 4,
            max_blocks: 100,
            subpool_blocks: None,
            grow_threshold: 0,
        }
    }

    fn spec(first: &str, last: &str, prefix: u8) -> WideSpec {
        legacy(v4(first), v4(last), Netmask::Prefix(prefix))
    }

    fn with_first_ip(spec: &mut WideSpec, first: &str) {
        if let WideShape::Legacy { first: given, .. } = &mut spec.shape {
            *given = v4(first);
        }
    }

    fn with_last_ip(spec: &mut WideSpec, last: &str) {
        if let WideShape::Legacy { last: given, .. } = &mut spec.shape {
            *given = v4(last);
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
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(
            (c.first_ip(), c.last_ip()),
            (ip("10.0.0.1"), ip("10.0.0.254"))
        );
        assert_eq!(c.ranges(), vec![(ip("10.0.0.1"), ip("10.0.0.254"))]);
        assert_eq!(c.legacy(), Some((ip("10.0.0.0"), ip("10.0.0.255"), 24)));
        assert_eq!(c.address_count(), 254 * 64512);
        assert_eq!(c.capacity, 100);
        let c = Config::validate(spec("10.0.0.0", "10.0.0.1", 31)).unwrap();
        assert_eq!(c.address_count(), 2 * 64512);
        let c = Config::validate(spec("10.0.0.7", "10.0.0.7", 32)).unwrap();
        assert_eq!(c.address_count(), 64512);
    }

    #[test]
    fn index_and_address_are_inverse() {
        let mut s = spec("10.0.0.1", "10.0.0.3", 24);
        s.ports = (100, 102);
        let c = Config::validate(s).unwrap();
        for i in 0..c.address_count() {
            let (ip, port) = c.address(i);
            assert_eq!(c.index(ip, port), Some(i));
        }
        assert_eq!(c.index(v4("10.0.0.4").1, 100), None);
        assert_eq!(c.index(v4("10.0.0.1").1, 103), None);
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
            field(with(&|s| {
                with_first_ip(s, "10.0.0.9");
                with_last_ip(s, "10.0.0.1");
            })),
            "last_ip"
        );
        assert_eq!(field(with(&|s| with_last_ip(s, "10.0.1.1"))), "netmask");
        let prefix_33 = legacy(v4("10.0.0.1"), v4("10.0.0.9"), Netmask::Prefix(33));
        assert_eq!(field(Config::validate(prefix_33)), "netmask");
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
        assert_eq!(u128::from(c.capacity()), c.address_count());
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
            (ip("10.0.0.1").into(), Some(ip("255.255.255.0").into()))
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

#[cfg(all(test, not(loom)))]
mod shape_tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn field(result: Result<Config, Error>) -> &'static str {
        match result {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn ranges_are_sorted_merged_and_counted() {
        let c = PoolSpec::with_ranges(
            "r",
            [
                (ip("10.0.1.0"), ip("10.0.1.3")),
                (ip("10.0.0.1"), ip("10.0.0.2")),
                (ip("10.0.0.3"), ip("10.0.0.3")), // touches: merged
            ],
        )
        .ports(1, 2)
        .initial_blocks(1)
        .build()
        .unwrap();
        assert_eq!(
            c.ranges(),
            vec![
                (ip("10.0.0.1"), ip("10.0.0.3")),
                (ip("10.0.1.0"), ip("10.0.1.3"))
            ]
        );
        assert_eq!(c.address_count(), 7 * 2);
        assert_eq!((c.netmask(), c.prefix(), c.legacy()), (None, None, None));
        assert_eq!(
            (c.first_ip(), c.last_ip()),
            (ip("10.0.0.1"), ip("10.0.1.3"))
        );
        // Index 6 is the first address of the second range.
        let first = u128::from(u32::from(Ipv4Addr::new(10, 0, 1, 0)));
        assert_eq!(c.address(6), (first, 1));
        assert_eq!(c.space().segment_count(), 2);
    }

    #[test]
    fn bad_ranges_and_exclusions_name_their_field_in_phase_three() {
        let spec =
            |ranges: Vec<(IpAddr, IpAddr)>| PoolSpec::with_ranges("r", ranges).initial_blocks(1);
        let a = (ip("10.0.0.1"), ip("10.0.0.5"));
        assert_eq!(field(spec(vec![]).build()), "ranges");
        assert_eq!(
            field(spec(vec![a, (ip("10.0.0.5"), ip("10.0.0.9"))]).build()),
            "ranges"
        );
        assert_eq!(
            field(spec(vec![(ip("10.0.0.5"), ip("10.0.0.1"))]).build()),
            "ranges"
        );
        assert_eq!(
            field(spec(vec![a, (ip("::1"), ip("::2"))]).build()),
            "ranges"
        );
        assert_eq!(
            field(spec(vec![(ip("10.0.0.1"), ip("::2"))]).build()),
            "ranges"
        );
        // Phase 2 comes first.
        assert_eq!(field(spec(vec![]).ports(0, 1).build()), "ports");
        let excluding = |e: Exclusion| spec(vec![a]).ports(10, 20).exclude([e]).build();
        assert_eq!(field(excluding(Exclusion::ip(ip("10.0.0.9")))), "exclude");
        assert_eq!(field(excluding(Exclusion::ip(ip("::1")))), "exclude");
        assert_eq!(
            field(excluding(Exclusion::ports(ip("10.0.0.1"), 9, 10))),
            "exclude"
        );
        assert_eq!(
            field(excluding(Exclusion::ports(ip("10.0.0.1"), 12, 11))),
            "exclude"
        );
        assert_eq!(
            field(excluding(Exclusion::ips(ip("10.0.0.1"), ip("10.0.0.5")))),
            "exclude"
        );
        assert_eq!(
            field(excluding(Exclusion::ips(ip("10.0.0.1"), ip("::5")))),
            "exclude"
        );
        let c = excluding(Exclusion::ports(ip("10.0.0.1"), 10, 12)).unwrap();
        assert_eq!(c.address_count(), 5 * 11 - 3);
        assert_eq!(c.capacity(), c.address_count() as u64);
        // The legacy form takes exclusions too.
        let c = PoolSpec::new("l", Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3))
            .ports(1, 1)
            .initial_blocks(1)
            .exclude([Exclusion::ip(Ipv4Addr::new(10, 0, 0, 2))])
            .build()
            .unwrap();
        assert_eq!(c.address_count(), 2);
    }

    #[test]
    fn ipv6_legacy_ranges_leave_out_the_subnet_router_anycast_address() {
        let v6 = |text: &str| text.parse::<Ipv6Addr>().unwrap();
        let c = PoolSpec::new("six", v6("2001:db8::"), v6("2001:db8::ffff"))
            .prefix(64)
            .ports(1, 10)
            .initial_blocks(1)
            .build()
            .unwrap();
        assert!(c.is_ipv6());
        assert_eq!(c.first_ip(), ip("2001:db8::1"));
        assert_eq!(c.netmask(), Some(ip("ffff:ffff:ffff:ffff::")));
        assert_eq!(c.address_count(), 0xffff * 10);
        // /127 and /128 keep every address.
        for prefix in [127, 128] {
            let c = PoolSpec::new("six", v6("2001:db8::"), v6("2001:db8::"))
                .prefix(prefix)
                .initial_blocks(1)
                .build()
                .unwrap();
            assert_eq!(c.first_ip(), ip("2001:db8::"));
        }
        let bad = |spec: PoolSpec| field(spec.initial_blocks(1).build());
        assert_eq!(
            bad(PoolSpec::new("x", v6("2001:db8::"), v6("2001:db8::")).prefix(64)),
            "first_ip"
        );
        assert_eq!(
            bad(PoolSpec::new("x", v6("2001:db8::"), v6("2001:db8:1::")).prefix(48)),
            "netmask"
        );
        assert_eq!(
            bad(PoolSpec::new("x", v6("2001:db8::"), v6("2001:db8::1")).prefix(129)),
            "netmask"
        );
        assert_eq!(
            bad(PoolSpec::new("x", ip("10.0.0.1"), v6("2001:db8::1"))),
            "first_ip"
        );
        // Prefix 0 on the whole IPv6 space: 2^128 - 1 addresses of one port fit ...
        let all =
            PoolSpec::new("x", v6("::"), v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")).ports(1, 1);
        assert_eq!(
            all.clone()
                .initial_blocks(1)
                .build()
                .unwrap()
                .address_count(),
            u128::MAX
        );
        // ... two ports do not.
        assert_eq!(bad(all.ports(1, 2)), "first_ip");
        // A dotted netmask with IPv6 addresses.
        let dotted = legacy_range((Family::V6, 1), (Family::V6, 2), Netmask::Dotted(24));
        assert!(matches!(
            dotted,
            Err(Error::Config {
                field: "netmask",
                ..
            })
        ));
    }
}
