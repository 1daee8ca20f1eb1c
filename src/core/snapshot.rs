//! The snapshot format (`docs/shapes.md`, "Snapshot format"): a pool's
//! whole state as bytes, the reference model's `natpool/reference/snapshot.py`
//! byte for byte.
//!
//! An [`Image`] is a snapshot's fields as values; [`Image::encode`] writes
//! them (header, sections, CRC-32) and [`Image::decode`] reads them back,
//! refusing with [`Error::Snapshot`] anything that is not a well-formed
//! snapshot of this version: the header, the checksum, every field's width
//! and range, every count against the bytes left, the enumerations and
//! flags, the zero fields, finite floats, canonical client identities
//! (`identity.rs`). What the fields must say about each other is checked
//! in two more steps: the configuration through the constructor's own
//! validation (`config.rs`), then the state against it (`check.rs`). Only an
//! image that passes all three is built into a pool (`pool/snapshot.rs`).
//!
//! Nothing here panics on any input: reads are bounded by the body, counts
//! by the bytes left (so no input makes a large allocation), and the
//! arithmetic on input values is checked.

mod check;
mod config;
pub(crate) mod identity;

use crate::core::clients::BlockEventKind;
use crate::core::error::Error;
use crate::core::policy::Order;
use crate::core::space::Family;

pub(crate) use check::{check, drained};
#[cfg_attr(not(feature = "python"), allow(unused_imports))] // the binding's store join
pub(crate) use config::exclusions;

/// The first bytes of every snapshot.
pub(crate) const MAGIC: &[u8; 8] = b"NATPSNAP";
/// The format version this core writes and reads.
pub(crate) const VERSION: u32 = 1;
/// No client (a subpool's owner, a block's client), in a `u32` field.
pub(crate) const NONE: u32 = u32::MAX;
/// Magic, version, total length.
const HEADER: usize = 8 + 4 + 8;
const CHECKSUM: usize = 4;
/// The bits of the configuration's `options` byte.
const SEEDED: u8 = 1;
const QUOTA: u8 = 2;
const PAIRED: u8 = 4;
const BLOCKS: u8 = 8;

/// The fewest bytes each item of a section takes (a count that the bytes
/// left cannot hold is refused before anything is allocated for it).
const FLOOR_SIZE: u64 = 8;
const IP_SIZE: u64 = 16;
const CLIENT_SIZE: u64 = 1 + 8 + 8 + 1 + 16 + 4;
const SUBPOOL_SIZE: u64 = 4 + 16 + 4 + 4 + 1 + 4;
const HELD_SIZE: u64 = 4 + 4 + 8;
const EVENT_SIZE: u64 = 8 + 1 + 1 + 16 + 2 + 16 + 2;
const RANGE_SIZE: u64 = 32;
const RUN_SIZE: u64 = 36;

/// A block's state in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    Free = 0,
    Live = 1,
    Held = 2,
}

/// An excluded run: its first and last address, `(ip, port)`, inclusive.
pub(crate) type Run = ((u128, u16), (u128, u16));

/// The configuration section.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConfigImage {
    pub name: String,
    pub family: Family,
    /// `first_ip`, `last_ip` and the netmask's prefix length of the legacy form.
    pub legacy: Option<(u128, u128, u8)>,
    pub ports: (u16, u16),
    /// The normalised ranges, inclusive.
    pub ranges: Vec<(u128, u128)>,
    /// Within each range, each maximal run of its addresses not in the space.
    pub excluded: Vec<Run>,
    pub initial_blocks: u32,
    pub max_blocks: u64,
    pub subpool_blocks: u32,
    pub grow_threshold: u64,
    pub hold_down: f64,
    pub order: Order,
    pub seed: Option<u64>,
    pub client_quota: Option<u64>,
    pub paired: bool,
    pub client_block: Option<u32>,
    pub event_queue: u64,
}

/// A client of the client table (its number is its position).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientImage {
    /// Its identity's canonical encoding (`identity.rs`).
    pub identity: Vec<u8>,
    pub live: u64,
    pub held: u64,
    /// Paired: the IP of its live leases.
    pub ip: Option<u128>,
    /// Its port blocks' subpool ids, in the order they were assigned.
    pub blocks: Vec<u32>,
}

/// A subpool: its blocks as flat arrays, offset 0 first, and its free list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubpoolImage {
    pub id: u32,
    /// The address index of its first block.
    pub first: u128,
    /// The client number of a port block's client; `None`: shared.
    pub owner: Option<u32>,
    /// It holds an address of a drained IP.
    pub fenced: bool,
    pub generations: Vec<u32>,
    pub states: Vec<Standing>,
    /// Each block's client number, or [`NONE`].
    pub clients: Vec<u32>,
    /// The free list's entries (phantoms included) in the reuse order's
    /// canonical order: FIFO and LIFO the next taken first, random the
    /// array from its first element.
    pub listed: Vec<u32>,
}

impl SubpoolImage {
    pub fn len(&self) -> usize {
        self.states.len()
    }
}

/// A held block, in release order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HeldImage {
    pub id: u32,
    pub offset: u32,
    /// Seconds left of its hold when the snapshot was written.
    pub remaining: f64,
}

/// A queued block event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventImage {
    pub time: f64,
    pub kind: BlockEventKind,
    /// Its client's identity's canonical encoding.
    pub identity: Vec<u8>,
    pub first: (u128, u16),
    pub last: (u128, u16),
}

/// A snapshot's fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Image {
    pub config: ConfigImage,
    /// `len()`.
    pub live: u64,
    /// The random order's SplitMix64 state (0 for the other orders).
    pub generator: u64,
    /// A shared subpool was made (the next one has `subpool_blocks`).
    pub shared_created: bool,
    /// `(id, generation)` of every id ever used and not in use, ascending.
    pub floors: Vec<(u32, u32)>,
    /// Drained IPs, ascending.
    pub drained: Vec<u128>,
    pub clients: Vec<ClientImage>,
    /// Subpools by id, ascending.
    pub subpools: Vec<SubpoolImage>,
    pub held: Vec<HeldImage>,
    pub events_dropped: u64,
    pub events: Vec<EventImage>,
}

fn refused(reason: impl Into<String>) -> Error {
    Error::Snapshot(reason.into())
}

// -- writing ---------------------------------------------------------------------------------

/// Little-endian fields appended to a buffer.
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    fn u16(&mut self, value: u16) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u128(&mut self, value: u128) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn f64(&mut self, value: f64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn len(&mut self, count: usize) {
        self.u32(count as u32);
    }
    fn wide_len(&mut self, count: usize) {
        self.u64(count as u64);
    }
    fn u32s(&mut self, values: &[u32]) {
        self.0.reserve(values.len() * 4);
        for value in values {
            self.u32(*value);
        }
    }
    fn address(&mut self, (ip, port): (u128, u16)) {
        self.u128(ip);
        self.u16(port);
    }
}

impl Image {
    /// The snapshot's bytes. The image must be one [`decode`](Self::decode)
    /// would give back (counts within their fields' widths).
    pub fn encode(&self) -> Vec<u8> {
        let blocks: usize = self
            .subpools
            .iter()
            .map(|s| 9 * s.len() + 4 * s.listed.len() + 40)
            .sum();
        let mut out = Out(Vec::with_capacity(
            HEADER + 512 + blocks + 64 * self.clients.len(),
        ));
        out.0.extend_from_slice(MAGIC);
        out.u32(VERSION);
        out.u64(0); // the length, filled in below
        self.config.encode(&mut out);
        out.u64(self.live);
        out.u64(self.generator);
        out.u8(u8::from(self.shared_created));
        out.len(self.floors.len());
        for &(id, generation) in &self.floors {
            out.u32(id);
            out.u32(generation);
        }
        out.wide_len(self.drained.len());
        for &ip in &self.drained {
            out.u128(ip);
        }
        out.len(self.clients.len());
        for client in &self.clients {
            out.0.extend_from_slice(&client.identity);
            out.u64(client.live);
            out.u64(client.held);
            out.u8(u8::from(client.ip.is_some()));
            out.u128(client.ip.unwrap_or(0));
            out.len(client.blocks.len());
            out.u32s(&client.blocks);
        }
        out.len(self.subpools.len());
        for subpool in &self.subpools {
            out.u32(subpool.id);
            out.u128(subpool.first);
            out.len(subpool.len());
            out.u32(subpool.owner.unwrap_or(NONE));
            out.u8(u8::from(subpool.fenced));
            out.u32s(&subpool.generations);
            out.0
                .extend(subpool.states.iter().map(|&state| state as u8));
            out.u32s(&subpool.clients);
            out.len(subpool.listed.len());
            out.u32s(&subpool.listed);
        }
        out.wide_len(self.held.len());
        for held in &self.held {
            out.u32(held.id);
            out.u32(held.offset);
            out.f64(held.remaining);
        }
        out.u64(self.events_dropped);
        out.wide_len(self.events.len());
        for event in &self.events {
            out.f64(event.time);
            out.u8(match event.kind {
                BlockEventKind::Assigned => 0,
                BlockEventKind::Released => 1,
            });
            out.0.extend_from_slice(&event.identity);
            out.address(event.first);
            out.address(event.last);
        }
        let mut bytes = out.0;
        let length = (bytes.len() + CHECKSUM) as u64;
        bytes[12..HEADER].copy_from_slice(&length.to_le_bytes());
        let checksum = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        bytes
    }
}

impl ConfigImage {
    fn encode(&self, out: &mut Out) {
        out.len(self.name.len());
        out.0.extend_from_slice(self.name.as_bytes());
        out.u8(self.family.number());
        out.u8(u8::from(self.legacy.is_some()));
        let (first, last, prefix) = self.legacy.unwrap_or((0, 0, 0));
        out.u128(first);
        out.u128(last);
        out.u8(prefix);
        out.u16(self.ports.0);
        out.u16(self.ports.1);
        out.wide_len(self.ranges.len());
        for &(first, last) in &self.ranges {
            out.u128(first);
            out.u128(last);
        }
        out.wide_len(self.excluded.len());
        for &(first, last) in &self.excluded {
            out.address(first);
            out.address(last);
        }
        out.u32(self.initial_blocks);
        out.u64(self.max_blocks);
        out.u32(self.subpool_blocks);
        out.u64(self.grow_threshold);
        out.f64(self.hold_down + 0.0); // -0.0 is written as 0.0
        out.u8(match self.order {
            Order::Fifo => 0,
            Order::Lifo => 1,
            Order::Random => 2,
        });
        let bit = |set: bool, bit: u8| if set { bit } else { 0 };
        out.u8(bit(self.seed.is_some(), SEEDED)
            | bit(self.client_quota.is_some(), QUOTA)
            | bit(self.paired, PAIRED)
            | bit(self.client_block.is_some(), BLOCKS));
        out.u64(self.seed.unwrap_or(0));
        out.u64(self.client_quota.unwrap_or(0));
        out.u32(self.client_block.unwrap_or(0));
        out.u64(self.event_queue);
    }
}

// -- reading ---------------------------------------------------------------------------------

/// Reads fixed-width little-endian fields of a snapshot's body; every read
/// past its end is refused.
pub(crate) struct In<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> In<'a> {
    pub(crate) fn take(&mut self, size: usize) -> Result<&'a [u8], Error> {
        if size > self.data.len() - self.pos {
            return Err(refused(format!(
                "truncated: a field of {size} bytes at offset {} runs past the body",
                self.pos
            )));
        }
        self.pos += size;
        Ok(&self.data[self.pos - size..self.pos])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut bytes = [0; N];
        bytes.copy_from_slice(self.take(N)?);
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Error> {
        self.array().map(u16::from_le_bytes)
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, Error> {
        self.array().map(u64::from_le_bytes)
    }
    fn u128(&mut self) -> Result<u128, Error> {
        self.array().map(u128::from_le_bytes)
    }
    pub(crate) fn f64(&mut self) -> Result<f64, Error> {
        self.array().map(f64::from_le_bytes)
    }

    /// A float that must be finite.
    fn finite(&mut self, what: &str) -> Result<f64, Error> {
        let value = self.f64()?;
        if !value.is_finite() {
            return Err(refused(format!("{what} is not a finite number")));
        }
        Ok(value)
    }

    /// A `0`/`1` byte.
    fn flag(&mut self, what: &str) -> Result<bool, Error> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(refused(format!("{what} is {other}, not 0 or 1"))),
        }
    }

    /// A count (`u32`, or `u64` if `wide`) of items of at least `size`
    /// bytes each, which the bytes left must be able to hold.
    pub(crate) fn count(&mut self, size: u64, wide: bool) -> Result<usize, Error> {
        let n = if wide {
            self.u64()?
        } else {
            u64::from(self.u32()?)
        };
        let left = (self.data.len() - self.pos) as u128;
        if u128::from(n) * u128::from(size) > left {
            return Err(refused(format!(
                "truncated: {n} items at offset {} run past the body",
                self.pos
            )));
        }
        Ok(n as usize)
    }

    /// `n` `u32`s (the caller bounded `n` by the bytes left).
    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, Error> {
        let bytes = self.take(n * 4)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|chunk| u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect())
    }

    fn address(&mut self) -> Result<(u128, u16), Error> {
        Ok((self.u128()?, self.u16()?))
    }

    /// A client identity's encoding, checked canonical; `None` at the top
    /// level is refused.
    fn identity(&mut self) -> Result<Vec<u8>, Error> {
        let start = self.pos;
        if identity::skip(self, 0)? == identity::Tag::None {
            return Err(refused("a client is None"));
        }
        Ok(self.data[start..self.pos].to_vec())
    }
}

impl Image {
    /// The fields of a snapshot, after its header and checksum are checked
    /// (step 1 of a restore; the fields' relations are checked after).
    pub fn decode(snapshot: &[u8]) -> Result<Image, Error> {
        if snapshot.len() < HEADER + CHECKSUM {
            return Err(refused(format!(
                "truncated: {} bytes is shorter than a snapshot's header and checksum",
                snapshot.len()
            )));
        }
        if &snapshot[..8] != MAGIC {
            return Err(refused("not a natpool snapshot (wrong magic)"));
        }
        let version = u32::from_le_bytes([snapshot[8], snapshot[9], snapshot[10], snapshot[11]]);
        if version != VERSION {
            return Err(refused(format!(
                "format version {version} is not supported (this natpool reads version {VERSION})"
            )));
        }
        let mut length = [0u8; 8];
        length.copy_from_slice(&snapshot[12..HEADER]);
        let length = u64::from_le_bytes(length);
        if u64::try_from(snapshot.len()) != Ok(length) {
            return Err(refused(format!(
                "truncated or extended: the header says {length} bytes, {} given",
                snapshot.len()
            )));
        }
        let body_end = snapshot.len() - CHECKSUM;
        let mut written = [0u8; 4];
        written.copy_from_slice(&snapshot[body_end..]);
        if u32::from_le_bytes(written) != crc32fast::hash(&snapshot[..body_end]) {
            return Err(refused("corrupt: the checksum does not match"));
        }
        let mut input = In {
            data: &snapshot[..body_end],
            pos: HEADER,
        };
        let image = Image::read(&mut input)?;
        if input.pos != body_end {
            return Err(refused(format!(
                "{} bytes after the last field",
                body_end - input.pos
            )));
        }
        Ok(image)
    }

    fn read(input: &mut In<'_>) -> Result<Image, Error> {
        let config = ConfigImage::read(input)?;
        let live = input.u64()?;
        let generator = input.u64()?;
        let shared_created = input.flag("shared_created")?;
        let floors = (0..input.count(FLOOR_SIZE, false)?)
            .map(|_| Ok((input.u32()?, input.u32()?)))
            .collect::<Result<_, Error>>()?;
        let drained = (0..input.count(IP_SIZE, true)?)
            .map(|_| input.u128())
            .collect::<Result<_, Error>>()?;
        let clients: Vec<ClientImage> = (0..input.count(CLIENT_SIZE, false)?)
            .map(|_| ClientImage::read(input))
            .collect::<Result<_, Error>>()?;
        if clients
            .windows(2)
            .any(|pair| pair[0].identity >= pair[1].identity)
        {
            return Err(refused(
                "the clients are not in strictly ascending order of their encoding",
            ));
        }
        let subpools = (0..input.count(SUBPOOL_SIZE, false)?)
            .map(|_| SubpoolImage::read(input))
            .collect::<Result<_, Error>>()?;
        let held = (0..input.count(HELD_SIZE, true)?)
            .map(|_| {
                Ok(HeldImage {
                    id: input.u32()?,
                    offset: input.u32()?,
                    remaining: input.finite("a hold's remaining time")?,
                })
            })
            .collect::<Result<_, Error>>()?;
        let events_dropped = input.u64()?;
        let events = (0..input.count(EVENT_SIZE, true)?)
            .map(|_| EventImage::read(input))
            .collect::<Result<_, Error>>()?;
        Ok(Image {
            config,
            live,
            generator,
            shared_created,
            floors,
            drained,
            clients,
            subpools,
            held,
            events_dropped,
            events,
        })
    }
}

impl ClientImage {
    fn read(input: &mut In<'_>) -> Result<ClientImage, Error> {
        let identity = input.identity()?;
        let live = input.u64()?;
        let held = input.u64()?;
        let has_ip = input.flag("a client's IP flag")?;
        let ip = input.u128()?;
        if !has_ip && ip != 0 {
            return Err(refused("a client without an IP has a nonzero IP field"));
        }
        let n = input.count(4, false)?;
        Ok(ClientImage {
            identity,
            live,
            held,
            ip: has_ip.then_some(ip),
            blocks: input.u32s(n)?,
        })
    }
}

impl SubpoolImage {
    fn read(input: &mut In<'_>) -> Result<SubpoolImage, Error> {
        let id = input.u32()?;
        let first = input.u128()?;
        let n = input.u32()?;
        let owner = input.u32()?;
        let fenced = input.flag("a subpool's flags")?;
        let left = (input.data.len() - input.pos) as u64;
        if n == 0 || u64::from(n) * 9 > left {
            return Err(refused(format!(
                "subpool {id} has {n} blocks (none, or more than the body holds)"
            )));
        }
        let n = n as usize;
        let generations = input.u32s(n)?;
        let states = input
            .take(n)?
            .iter()
            .map(|&state| match state {
                0 => Ok(Standing::Free),
                1 => Ok(Standing::Live),
                2 => Ok(Standing::Held),
                _ => Err(refused(format!(
                    "subpool {id}: a block state is not 0 (free), 1 (live) or 2 (held)"
                ))),
            })
            .collect::<Result<_, Error>>()?;
        let clients = input.u32s(n)?;
        let m = input.count(4, false)?;
        Ok(SubpoolImage {
            id,
            first,
            owner: (owner != NONE).then_some(owner),
            fenced,
            generations,
            states,
            clients,
            listed: input.u32s(m)?,
        })
    }
}

impl EventImage {
    fn read(input: &mut In<'_>) -> Result<EventImage, Error> {
        let time = input.finite("an event's time")?;
        let kind = match input.u8()? {
            0 => BlockEventKind::Assigned,
            1 => BlockEventKind::Released,
            other => {
                return Err(refused(format!(
                    "event kind {other} is not 0 (assigned) or 1 (released)"
                )))
            }
        };
        Ok(EventImage {
            time,
            kind,
            identity: input.identity()?,
            first: input.address()?,
            last: input.address()?,
        })
    }
}

impl ConfigImage {
    fn read(input: &mut In<'_>) -> Result<ConfigImage, Error> {
        let name_length = input.count(1, false)?;
        let name = std::str::from_utf8(input.take(name_length)?)
            .map_err(|_| refused("the pool name is not valid UTF-8"))?
            .to_owned();
        let family = input.u8()?;
        let legacy = input.flag("the shape's form")?;
        let family = match family {
            4 => Family::V4,
            6 => Family::V6,
            other => return Err(refused(format!("family {other} is not 4 or 6"))),
        };
        let (first, last, prefix) = (input.u128()?, input.u128()?, input.u8()?);
        if !legacy && (first != 0 || last != 0 || prefix != 0) {
            return Err(refused("a pool of ranges has nonzero legacy fields"));
        }
        let ports = (input.u16()?, input.u16()?);
        let ranges: Vec<(u128, u128)> = (0..input.count(RANGE_SIZE, true)?)
            .map(|_| Ok((input.u128()?, input.u128()?)))
            .collect::<Result<_, Error>>()?;
        let excluded: Vec<Run> = (0..input.count(RUN_SIZE, true)?)
            .map(|_| Ok((input.address()?, input.address()?)))
            .collect::<Result<_, Error>>()?;
        let initial_blocks = input.u32()?;
        let max_blocks = input.u64()?;
        let subpool_blocks = input.u32()?;
        let grow_threshold = input.u64()?;
        let hold_down = input.f64()?;
        let order = match input.u8()? {
            0 => Order::Fifo,
            1 => Order::Lifo,
            2 => Order::Random,
            other => {
                return Err(refused(format!(
                    "order {other} is not 0 (fifo), 1 (lifo) or 2 (random)"
                )))
            }
        };
        let options = input.u8()?;
        if options & !(SEEDED | QUOTA | PAIRED | BLOCKS) != 0 {
            return Err(refused(format!("options {options:#x} has unknown bits")));
        }
        let seed = input.u64()?;
        let quota = input.u64()?;
        let block = input.u32()?;
        let event_queue = input.u64()?;
        for (bit, value, what) in [
            (SEEDED, seed, "seed"),
            (QUOTA, quota, "client_quota"),
            (BLOCKS, u64::from(block), "client_block"),
        ] {
            if options & bit == 0 && value != 0 {
                return Err(refused(format!(
                    "{what} is not set but its field is {value}"
                )));
            }
        }
        let top = match family {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        };
        let ips = [first, last]
            .into_iter()
            .chain(ranges.iter().flat_map(|&(a, b)| [a, b]))
            .chain(excluded.iter().flat_map(|&((a, _), (b, _))| [a, b]));
        if ips.into_iter().any(|ip| ip > top) {
            return Err(refused(format!(
                "an address of the configuration is not an IPv{} address",
                family.number()
            )));
        }
        let set = |bit: u8| options & bit != 0;
        Ok(ConfigImage {
            name,
            family,
            legacy: legacy.then_some((first, last, prefix)),
            ports,
            ranges,
            excluded,
            initial_blocks,
            max_blocks,
            subpool_blocks,
            grow_threshold,
            hold_down,
            order,
            seed: set(SEEDED).then_some(seed),
            client_quota: set(QUOTA).then_some(quota),
            paired: set(PAIRED),
            client_block: set(BLOCKS).then_some(block),
            event_queue,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
