//! One core as its connections see it ([`Core`]): the core's index, what every core shares, its
//! slice of extranonce1 values, connection ids, the events buffer and the table of its live
//! connections. `core.rs` drives a core (accept loops, fan-out, ticks) and `connection.rs` one
//! connection; both use this module, and the table is generic over the connection ([`Member`]),
//! so this module names neither and they need not import each other both ways.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::server::shared::Shared;
use crate::session::Event;
use crate::units::Extranonce1;

/// What a core's table needs of a connection.
pub trait Member {
    /// Unique among the core's connections ([`Core::next_connection_id`]).
    fn id(&self) -> u64;
    /// The extranonce1 its session holds now (a resume may have changed it).
    fn extranonce1(&self) -> Extranonce1;
}

/// Hands out extranonce1 values unique among this process's live connections: each core owns an
/// equal slice of the space and counts through it, skipping values still in use, so a value comes
/// back only after the whole slice has been used.
struct ExtranonceAllocator {
    base: u64,
    span: u64,
    size: usize,
    next: u64,
    in_use: HashSet<u64>,
}

impl ExtranonceAllocator {
    /// With an engine slot (the Redis plane), the first byte of every value is the slot, so values
    /// are unique across the fleet; the cores share the rest.
    fn new(core: usize, cores: usize, size: usize, slot: Option<u8>) -> ExtranonceAllocator {
        let (space, offset): (u128, u64) = match slot {
            Some(slot) if size >= 2 => (
                1u128 << (8 * (size - 1)),
                u64::from(slot) << (8 * (size - 1)),
            ),
            _ => (1u128 << (8 * size), 0),
        };
        let span = (space / cores as u128).min(u64::MAX as u128) as u64;
        ExtranonceAllocator {
            base: offset + core as u64 * span,
            span,
            size,
            next: 0,
            in_use: HashSet::new(),
        }
    }

    fn allocate(&mut self) -> Option<Extranonce1> {
        if self.in_use.len() as u64 >= self.span {
            return None;
        }
        loop {
            let value = self.base + self.next % self.span;
            self.next = self.next.wrapping_add(1);
            if self.in_use.insert(value) {
                return Extranonce1::from_counter(value, self.size);
            }
        }
    }

    fn claim(&mut self, e: &Extranonce1) {
        let value = crate::session::extranonce1_value(e);
        if value >= self.base && value - self.base < self.span {
            self.in_use.insert(value);
        }
    }

    fn release(&mut self, e: &Extranonce1) {
        self.in_use.remove(&crate::session::extranonce1_value(e));
    }
}

/// One core as its connections see it; `C` is the connection type (`connection::Conn`).
pub struct Core<C> {
    pub index: usize,
    pub shared: Arc<Shared>,
    conns: RefCell<HashMap<u64, Rc<C>>>,
    next_conn: Cell<u64>,
    extranonces: RefCell<ExtranonceAllocator>,
    /// Reused for every line, so events cost no allocation.
    pub events: RefCell<Vec<Event>>,
    /// The (policy set, reload) generations this core last applied to its connections.
    pub settings_seen: Cell<(u64, u64)>,
    /// Durable acknowledgement: the last number given to an accept this core logged ...
    accepts: Cell<u64>,
    /// ... and the connections holding a reply for an accept not yet settled, in number order
    /// (a closed one stays until its number is settled, then goes).
    pub held: RefCell<VecDeque<(u64, Rc<C>)>>,
}

impl<C: Member> Core<C> {
    pub fn new(index: usize, shared: Arc<Shared>) -> Core<C> {
        Core {
            index,
            extranonces: RefCell::new(ExtranonceAllocator::new(
                index,
                shared.settings.threads,
                shared.settings.coinbase.extranonce.extranonce1(),
                shared.hooks.slot.as_ref().map(|l| l.slot),
            )),
            shared,
            conns: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            events: RefCell::new(Vec::with_capacity(8)),
            settings_seen: Cell::new((0, 0)),
            accepts: Cell::new(0),
            held: RefCell::new(VecDeque::new()),
        }
    }

    /// Numbers the next accept this core logs (from 1).
    pub fn next_accept(&self) -> u64 {
        let seq = self.accepts.get() + 1;
        self.accepts.set(seq);
        seq
    }

    pub fn allocate_extranonce(&self) -> Option<Extranonce1> {
        self.extranonces.borrow_mut().allocate()
    }

    /// A resumed session takes its saved extranonce1: the value allocated for the connection goes
    /// back, and the saved one is held if it is in this core's slice (one from another engine is
    /// unique by its slot byte).
    pub fn swap_extranonce(&self, allocated: &Extranonce1, resumed: &Extranonce1) {
        let mut a = self.extranonces.borrow_mut();
        a.release(allocated);
        a.claim(resumed);
        // A session from another slot keeps that slot from being leased again while it lives.
        if let Some(lease) = &self.shared.hooks.slot {
            lease.pin(resumed.as_bytes()[0]);
        }
    }

    pub fn next_connection_id(&self) -> u64 {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        id
    }

    pub fn register(&self, conn: Rc<C>) {
        self.shared.metrics.cores[self.index]
            .connections
            .fetch_add(1, Ordering::Relaxed);
        self.conns.borrow_mut().insert(conn.id(), conn);
    }

    pub fn unregister(&self, conn: &C) {
        if self.conns.borrow_mut().remove(&conn.id()).is_some() {
            self.shared.metrics.cores[self.index]
                .connections
                .fetch_sub(1, Ordering::Relaxed);
            let extranonce1 = conn.extranonce1();
            self.extranonces.borrow_mut().release(&extranonce1);
            if let Some(lease) = &self.shared.hooks.slot {
                lease.unpin(extranonce1.as_bytes()[0]);
            }
        }
    }

    /// A copy of the table, so that each connection may close (and leave the table) while the
    /// caller goes through them.
    pub fn connections(&self) -> Vec<Rc<C>> {
        self.conns.borrow().values().cloned().collect()
    }
}
