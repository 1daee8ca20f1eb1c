//! A pool's state out to a snapshot, and a pool built from one
//! (`docs/shapes.md`, "Snapshot format"; the bytes are
//! `core/snapshot.rs`'s).
//!
//! **Writing** reads the state under the clients lock and the writer lock
//! (and, briefly, the held queue's): no subpool is created, deleted,
//! drained or reserved meanwhile, and no allocation or free for a client
//! runs. The lock-free allocations and frees are not stopped (they take no
//! lock, and must not pay for snapshots): the state read is checked as
//! `restore` would check it (`snapshot/check.rs`) and read again if a take
//! or return in flight left it inconsistent. So a snapshot is always one
//! `restore` accepts; of a quiescent pool it is the exact state, and while
//! other threads allocate and free it is each subpool as it was at some
//! moment of the call (leases allocated or freed meanwhile may be in it or
//! not). Then, outside the locks, the client keys are encoded by the
//! caller (`Export::finish`: the binding writes Python values, the Rust
//! API ints), and the clock is read, last, if a block is held.
//!
//! **Restoring** reads and checks the bytes whole ([`Restorable::read`]:
//! the fields, the configuration through the constructor's validation,
//! the state against it) before anything is built; the caller then maps
//! the client identities to keys, checks its `data`, reads the clock (if
//! a block is held) and [`Restorable::build`]s the pool directly from the
//! parts: every subpool with its blocks' generations and states, its free
//! list in its order (phantoms included), the held queue, the writer's ids
//! and floors, the clients and events, the counters. No call is replayed.

use std::collections::HashMap;

use crate::core::tally::Tally;

use crate::core::availability::Availability;
use crate::core::clients::{BlockEvent, ClientState, Clients};
use crate::core::config::Config;
use crate::core::epoch::{Retired, Slot};
use crate::core::error::Error;
use crate::core::handle::Handle;
use crate::core::held::Held;
use crate::core::interval_list::IntervalList;
use crate::core::policy::{Clock, Order};
use crate::core::pool::cluster::{check_store_space, Cluster};
use crate::core::pool::writer::Writer;
use crate::core::pool::Pool;
use crate::core::rng::SplitMix64;
use crate::core::segvec::SegVec;
use crate::core::snapshot::{
    self, identity, ClientImage, ConfigImage, EventImage, HeldImage, Image, Standing, SubpoolImage,
    NONE,
};
use crate::core::store::Membership;
use crate::core::subpool::Subpool;
use crate::core::sync::{yield_now, Arc, AtomicArc, AtomicU64, Mutex, Ordering};

/// How often `snapshot()` reads a pool whose state changed under it before
/// it gives up.
const ATTEMPTS: usize = 16;

/// A pool's state as read for a snapshot: an image whose clients are
/// numbered in the order of their keys and have no identity yet, and whose
/// holds carry their end (not yet the time left).
pub(crate) struct Export {
    image: Image,
    /// Client number to key.
    keys: Vec<u64>,
    /// Each queued event's client key.
    event_keys: Vec<u64>,
}

impl<T: Default + Send + Sync> Pool<T> {
    /// The pool's state as a snapshot (`docs/shapes.md`), its clients
    /// written as ints (their keys). Changes nothing; reads the clock if,
    /// and only if, a block is held. [`Error::Snapshot`] for a pool with a
    /// store. See the module documentation for a pool in use by other
    /// threads.
    pub fn snapshot(&self) -> Result<Vec<u8>, Error> {
        self.export()?.finish(
            |key| Ok::<_, Error>(identity::int(key)),
            || self.clock.now(),
        )
    }

    /// The pool a snapshot holds, its holds timed by `clock` (read once, if
    /// a block is held): every lease live with its handle and address, with
    /// `T::default()` as its data. [`Error::Snapshot`] for bytes that are
    /// not a snapshot of this version, or corrupt, or inconsistent, or whose
    /// clients are not ints in `0..u64::MAX` (a Rust pool's keys). The pool
    /// has no store; [`Restorable::build`] makes a member of a cluster.
    pub fn restore(snapshot: &[u8], clock: Clock) -> Result<Pool<T>, Error> {
        let restorable = Restorable::read(snapshot)?;
        let key = |identity: &[u8]| {
            identity::as_key(identity).ok_or_else(|| {
                Error::Snapshot("a client is not an int in 0..2**64-1 (a Rust pool's key)".into())
            })
        };
        let keys = restorable
            .client_identities()
            .map(key)
            .collect::<Result<Vec<_>, _>>()?;
        let event_keys = restorable
            .event_identities()
            .map(key)
            .collect::<Result<Vec<_>, _>>()?;
        let now = if restorable.holds() {
            Some(clock.now()?)
        } else {
            None
        };
        restorable.build(clock, now, &keys, &event_keys, |_| T::default(), None)
    }

    /// The pool's state, read consistently (see the module documentation),
    /// for [`Export::finish`].
    pub(crate) fn export(&self) -> Result<Export, Error> {
        let mut reason = String::new();
        for _ in 0..ATTEMPTS {
            match self.read_state() {
                Ok(export) => return Ok(export),
                Err(changed) => reason = changed,
            }
            yield_now();
        }
        Err(Error::Snapshot(format!(
            "pool {:?} changed while its state was read ({reason}): snapshot a pool no other \
             thread is allocating from or freeing to",
            self.config.name()
        )))
    }

    /// One reading of the state under the locks; `Err` with the reason when
    /// what was read is not consistent (a take or return in flight).
    fn read_state(&self) -> Result<Export, String> {
        let clients = self.lock_clients();
        let writer = self.lock_writer();
        let mut keys: Vec<u64> = clients.states().map(|(key, _)| key).collect();
        keys.sort_unstable();
        let number: HashMap<u64, u32> = keys
            .iter()
            .enumerate()
            .map(|(n, &key)| (key, n as u32))
            .collect();
        let number_of = |key: u64| number.get(&key).copied().ok_or("a client without a state");
        let client_images = keys
            .iter()
            .map(|key| {
                let state = clients.get(*key).ok_or("a client without a state")?;
                Ok(ClientImage {
                    identity: Vec::new(),
                    live: state.live,
                    held: state.held,
                    ip: state.ip,
                    blocks: state.blocks.iter().map(|block| block.id).collect(),
                })
            })
            .collect::<Result<Vec<_>, &str>>()?;
        let published = self.intervals.load();
        let mut subpools: Vec<&Arc<Subpool<T>>> = published.subpools.iter().collect();
        subpools.sort_unstable_by_key(|subpool| subpool.id);
        let subpool_images = subpools
            .into_iter()
            .map(|subpool| self.subpool_image(subpool, &number_of))
            .collect::<Result<Vec<_>, &str>>()?;
        let held = self
            .held
            .entries()
            .ok_or("a release waiting for a lookup")?
            .into_iter()
            .map(|(id, offset, end)| HeldImage {
                id,
                offset,
                remaining: end,
            })
            .collect();
        let space = self.config.space();
        let mut event_keys = Vec::new();
        let events = clients
            .queued_events()
            .map(|event| {
                event_keys.push(event.client);
                EventImage {
                    time: event.time,
                    kind: event.kind,
                    identity: Vec::new(),
                    first: space.address(event.first),
                    last: space.address(event.first + u128::from(event.count) - 1),
                }
            })
            .collect();
        let image = Image {
            config: ConfigImage::of(&self.config),
            live: self.len(),
            generator: if self.config.order() == Order::Random {
                self.rng.state()
            } else {
                0
            },
            shared_created: writer.created,
            floors: writer.floors(),
            drained: self.drained_set().ips(),
            clients: client_images,
            subpools: subpool_images,
            held,
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            events,
        };
        drop(writer);
        drop(clients);
        snapshot::check(&self.config, &image).map_err(|error| error.to_string())?;
        Ok(Export {
            image,
            keys,
            event_keys,
        })
    }

    /// One subpool's part of a snapshot, its clients numbered by `number_of`.
    fn subpool_image(
        &self,
        subpool: &Subpool<T>,
        number_of: &impl Fn(u64) -> Result<u32, &'static str>,
    ) -> Result<SubpoolImage, &'static str> {
        let n = subpool.blocks.len();
        let mut generations = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut clients = Vec::with_capacity(n);
        let mut free = 0u64;
        for (offset, block) in subpool.blocks.iter().enumerate() {
            let (generation, standing) = block.standing().ok_or("a block between states")?;
            generations.push(generation);
            states.push(standing);
            free += u64::from(standing == Standing::Free);
            let client = match standing {
                Standing::Free => None,
                Standing::Live | Standing::Held => subpool.client(offset as u32),
            };
            clients.push(client.map_or(Ok(NONE), number_of)?);
        }
        let listed = subpool.free.entries().ok_or("a free list being changed")?;
        if subpool.free.available() != free {
            return Err("a free count that does not match the free blocks");
        }
        Ok(SubpoolImage {
            id: subpool.id,
            first: subpool.start,
            owner: subpool.owner.map(number_of).transpose()?,
            fenced: subpool.is_drain_fenced(),
            generations,
            states,
            clients,
            listed,
        })
    }
}

impl Export {
    /// The client keys whose identities [`finish`](Self::finish) asks for:
    /// the client table's and the queued events'.
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // the binding's encoding
    pub(crate) fn client_keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().chain(&self.event_keys).copied()
    }

    /// The snapshot's bytes: each client key's identity encoded by
    /// `identity` (which refuses a client the format cannot write), the
    /// clients sorted by their encodings, then (only if a block is held)
    /// the clock read by `now`, last, for the time each hold has left.
    pub(crate) fn finish<E: From<Error>>(
        self,
        mut identity: impl FnMut(u64) -> Result<Vec<u8>, E>,
        now: impl FnOnce() -> Result<f64, E>,
    ) -> Result<Vec<u8>, E> {
        let Export {
            mut image,
            keys,
            event_keys,
        } = self;
        if keys.len() >= NONE as usize {
            return Err(
                Error::Snapshot(format!("a snapshot holds at most {} clients", NONE - 1)).into(),
            );
        }
        let mut encoded: HashMap<u64, Vec<u8>> = HashMap::with_capacity(keys.len());
        for (client, &key) in image.clients.iter_mut().zip(&keys) {
            client.identity = identity(key)?;
            encoded.insert(key, client.identity.clone());
        }
        for (event, &key) in image.events.iter_mut().zip(&event_keys) {
            event.identity = match encoded.get(&key) {
                Some(bytes) => bytes.clone(),
                None => {
                    let bytes = identity(key)?;
                    encoded.insert(key, bytes.clone());
                    bytes
                }
            };
        }
        sort_clients(&mut image)?;
        if !image.held.is_empty() {
            let now = now()?;
            for held in &mut image.held {
                held.remaining -= now; // the end, less now: the time left
            }
        }
        Ok(image.encode())
    }
}

/// Put the clients in the ascending order of their encodings and renumber
/// the subpools' owners and blocks' clients to match.
fn sort_clients(image: &mut Image) -> Result<(), Error> {
    let mut order: Vec<usize> = (0..image.clients.len()).collect();
    order.sort_by(|&a, &b| image.clients[a].identity.cmp(&image.clients[b].identity));
    if order
        .windows(2)
        .any(|pair| image.clients[pair[0]].identity == image.clients[pair[1]].identity)
    {
        return Err(Error::Snapshot("two clients have one encoding".into()));
    }
    let mut renumbered = vec![0u32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        renumbered[old] = new as u32;
    }
    let mut clients: Vec<Option<ClientImage>> = image.clients.drain(..).map(Some).collect();
    image.clients = order
        .iter()
        .filter_map(|&old| clients[old].take())
        .collect();
    for subpool in &mut image.subpools {
        subpool.owner = subpool.owner.map(|owner| renumbered[owner as usize]);
        for client in subpool.clients.iter_mut().filter(|client| **client != NONE) {
            *client = renumbered[*client as usize];
        }
    }
    Ok(())
}

/// A snapshot read and checked whole: what `restore` builds a pool from.
pub(crate) struct Restorable {
    config: Config,
    image: Image,
}

impl Restorable {
    /// The configuration of the pool to build.
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // the binding's store join
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Read and check a snapshot (every refusal is [`Error::Snapshot`]):
    /// its fields, its configuration through the constructor's checks, its
    /// state against them.
    pub fn read(snapshot: &[u8]) -> Result<Restorable, Error> {
        let image = Image::decode(snapshot)?;
        let config = image.config.validate()?;
        snapshot::check(&config, &image)?;
        Ok(Restorable { config, image })
    }

    /// The clients' identities, by client number.
    pub fn client_identities(&self) -> impl Iterator<Item = &[u8]> {
        self.image
            .clients
            .iter()
            .map(|client| client.identity.as_slice())
    }

    /// The queued events' clients' identities, oldest event first.
    pub fn event_identities(&self) -> impl Iterator<Item = &[u8]> {
        self.image
            .events
            .iter()
            .map(|event| event.identity.as_slice())
    }

    /// Whether a block is held (then `build` needs the clock's time).
    pub fn holds(&self) -> bool {
        !self.image.held.is_empty()
    }

    /// Whether `handle` is the handle of a live lease of the snapshot.
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // the binding's `data` check
    pub fn is_live(&self, handle: Handle) -> bool {
        let Some((generation, id, offset)) = handle.parts() else {
            return false;
        };
        let Ok(at) = self.image.subpools.binary_search_by_key(&id, |s| s.id) else {
            return false;
        };
        let subpool = &self.image.subpools[at];
        let offset = offset as usize;
        subpool.states.get(offset) == Some(&Standing::Live)
            && subpool.generations[offset] == generation
    }

    /// The pool: `clock` times its holds, `now` is the clock's time read
    /// for them (`None` when none is held), `clients` and `events` are the
    /// keys of the clients (by number) and of the events' clients (by
    /// event), and `data` gives each live lease its data. Refuses a hold
    /// whose end `now + remaining` is not finite. With `membership` (the
    /// caller has joined the cluster), the pool is a member that claimed
    /// exactly its subpools' ranges again (`Store::reclaim`):
    /// [`Error::Snapshot`] if the store refuses, [`Error::Store`] if it
    /// fails; the caller then leaves the cluster.
    pub fn build<T: Default + Send + Sync>(
        self,
        clock: Clock,
        now: Option<f64>,
        clients: &[u64],
        events: &[u64],
        mut data: impl FnMut(Handle) -> T,
        membership: Option<Membership>,
    ) -> Result<Pool<T>, Error> {
        let Restorable { config, image } = self;
        if clients.len() != image.clients.len() || events.len() != image.events.len() {
            return Err(Error::Snapshot(format!(
                "{} client keys and {} event keys for {} clients and {} events",
                clients.len(),
                events.len(),
                image.clients.len(),
                image.events.len()
            )));
        }
        let ends: Vec<f64> = image
            .held
            .iter()
            .map(|held| now.unwrap_or(0.0) + held.remaining)
            .collect();
        if ends.iter().any(|end| !end.is_finite()) {
            return Err(Error::Snapshot(
                "a hold ends beyond the range of the clock's numbers".into(),
            ));
        }
        let space = config.space();
        let drained = snapshot::drained(space, &image.drained)?;
        // A member claims its subpools' ranges again first: every check of
        // the image is behind (`read`), so nothing after this fails but for
        // memory.
        let (cluster, epochs) = match membership {
            None => (None, HashMap::new()),
            Some(membership) => {
                check_store_space(&config)?;
                if config.client_block().is_some() {
                    return Err(Error::config(
                        "client_block",
                        "is not supported with a store yet",
                    ));
                }
                let mut parts: Vec<(u64, u64, u32)> = Vec::with_capacity(image.subpools.len());
                for part in &image.subpools {
                    let first = u64::try_from(part.first).map_err(|_| {
                        Error::Snapshot("a subpool beyond a store's numbers".into())
                    })?;
                    parts.push((first, part.len() as u64, part.id));
                }
                parts.sort_unstable();
                let ranges: Vec<(u64, u64)> = parts.iter().map(|&(f, n, _)| (f, n)).collect();
                let cluster = Cluster::new(membership);
                let epochs = cluster.reclaim(&ranges)?;
                let by_id: HashMap<u32, u64> = parts.iter().map(|p| p.2).zip(epochs).collect();
                (Some(cluster), by_id)
            }
        };
        let ids = image.subpools.len() as u64 + image.floors.len() as u64;
        let next_id = u32::try_from(ids)
            .map_err(|_| Error::Snapshot(format!("{ids} subpool ids is more than 2**32")))?;

        let mut subpools: Vec<Arc<Subpool<T>>> = Vec::with_capacity(image.subpools.len());
        for part in &image.subpools {
            let keys: Vec<Option<u64>> = part
                .clients
                .iter()
                .map(|&client| (client != NONE).then(|| clients[client as usize]))
                .collect();
            let id = part.id;
            let mut subpool = Subpool::restored(
                &config,
                id,
                part.first,
                (&part.generations, &part.states, &keys),
                &part.listed,
                part.owner.map(|owner| clients[owner as usize]),
                part.fenced,
                |offset, generation| data(Handle::new(generation, id, offset)),
            )?;
            subpool.epoch = epochs.get(&id).copied();
            subpools.push(Arc::new(subpool));
        }
        let by_id = |id: u32| {
            subpools
                .binary_search_by_key(&id, |s| s.id)
                .map(|at| Arc::clone(&subpools[at]))
                .map_err(|_| Error::Snapshot(format!("no subpool {id}")))
        };

        // Blocks of a standing, in every subpool or in port blocks only.
        let blocks_of = |standing: Standing, port_blocks_only: bool| -> u64 {
            image
                .subpools
                .iter()
                .filter(|s| !port_blocks_only || s.owner.is_some())
                .map(|s| s.states.iter().filter(|&&state| state == standing).count() as u64)
                .sum()
        };
        let held_blocks = blocks_of(Standing::Held, false);
        let port_taken = blocks_of(Standing::Live, true) + blocks_of(Standing::Held, true);
        let port_blocks: u64 = image
            .subpools
            .iter()
            .filter(|s| s.owner.is_some())
            .map(|s| s.len() as u64)
            .sum();

        let slots: SegVec<Slot<Subpool<T>>> = SegVec::new();
        // The slots are new: nothing is replaced, so nothing is retired.
        let mut retired = Retired::default();
        let availability = Availability::new(config.capacity().max(1));
        for subpool in &subpools {
            slots.ensure(subpool.id as usize);
            availability.ensure(subpool.id);
            slots
                .get(subpool.id as usize)
                .ok_or_else(|| Error::Snapshot("no slot".into()))?
                .store(Some(Arc::clone(subpool)), &mut retired);
            if subpool.owner.is_none() && !subpool.is_drain_fenced() && subpool.free.has_free() {
                availability.set(subpool.id);
            }
        }
        let mut by_start: Vec<Arc<Subpool<T>>> = subpools.iter().map(Arc::clone).collect();
        by_start.sort_unstable_by_key(|s| s.start);

        let held = Held::restored(
            image
                .held
                .iter()
                .zip(&ends)
                .map(|(entry, &end)| Ok((by_id(entry.id)?.id, entry.offset, end)))
                .collect::<Result<_, Error>>()?,
        );
        let states = image
            .clients
            .iter()
            .zip(clients)
            .map(|(client, &key)| {
                let blocks = client
                    .blocks
                    .iter()
                    .map(|&id| by_id(id))
                    .collect::<Result<_, Error>>()?;
                let state = ClientState {
                    live: client.live,
                    held: client.held,
                    ip: client.ip,
                    blocks,
                };
                Ok((key, state))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let k = config.client_block().unwrap_or(0);
        let block_events = image
            .events
            .iter()
            .zip(events)
            .map(|(event, &client)| {
                let first = space.index(event.first.0, event.first.1).ok_or_else(|| {
                    Error::Snapshot("an event is not of a client's port block of the pool".into())
                })?;
                Ok(BlockEvent {
                    time: event.time,
                    kind: event.kind,
                    client,
                    first,
                    count: u64::from(k),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let drain_fenced = image.subpools.iter().filter(|s| s.fenced).count() as u64;
        let blocks: u64 = image.subpools.iter().map(|s| s.len() as u64).sum();

        Ok(Pool {
            tally: Tally::new(image.live + held_blocks, image.live),
            blocks: AtomicU64::new(blocks),
            slots,
            retired: Mutex::new(retired),
            availability,
            intervals: IntervalList::with_subpools(by_start, space),
            writer: Mutex::new(Writer::restored(
                image.shared_created,
                next_id,
                &image.floors,
            )),
            held,
            rng: SplitMix64::new(image.generator),
            clock,
            clients: Mutex::new(Clients::restored(
                config.event_queue(),
                states,
                block_events,
            )),
            client_blocks: AtomicU64::new(port_blocks),
            client_taken: AtomicU64::new(port_taken),
            events_dropped: AtomicU64::new(image.events_dropped),
            last_time: AtomicU64::new(now.unwrap_or(0.0).to_bits()),
            cluster,
            // No claim has lapsed yet: the fenced subpools are the
            // drain-fenced ones (`drain` counts a drain-fenced subpool in both).
            fenced_subpools: AtomicU64::new(drain_fenced),
            drained_ips: AtomicArc::new(Some(Arc::new(drained))),
            drain_fenced_subpools: AtomicU64::new(drain_fenced),
            homes: super::home::PoolHomes::new(),
            config,
        })
    }
}
