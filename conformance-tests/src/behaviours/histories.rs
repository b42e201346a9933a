//! Random concurrent histories checked for linearizability: several tasks over the two instances
//! of a [`store_pair`](StoreFactory::store_pair) run random operations on a small key space (so
//! that they collide), every invocation and response is recorded in real-time order, and the
//! history is checked against the sequential model of the contract with `stateright`'s
//! [`LinearizabilityTester`]. Expiries are far in the future, so time plays no part.

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

use super::prelude::*;

/// How many histories, from which seed, of what size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Histories to run.
    pub histories: u32,
    /// Seed of the first history; history `i` uses `seed + i`.
    pub seed: u64,
    /// Concurrent tasks per history (split over the two instances of the pair).
    pub tasks: usize,
    /// Operations per task.
    pub ops_per_task: usize,
    /// Keys the tasks share.
    pub keys: usize,
}

impl Default for HistoryOptions {
    /// 12 histories from seed 1, 4 tasks × 8 operations over 3 keys: each checks in
    /// milliseconds.
    fn default() -> Self {
        Self {
            histories: 12,
            seed: 1,
            tasks: 4,
            ops_per_task: 8,
            keys: 3,
        }
    }
}

/// One operation of a history. Keys are indices into the history's key space; data and expiry
/// tags are unique per write, so a read tells which write it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `create(key)` writing `data` with expiry tag `data`.
    Create {
        /// Key index.
        key: usize,
        /// Unique data (and expiry tag).
        data: u32,
    },
    /// `read(key)`.
    Read {
        /// Key index.
        key: usize,
    },
    /// `update(current, previous, expected, data)` (in place when `current == previous`).
    Update {
        /// Key index written.
        current: usize,
        /// Key index read.
        previous: usize,
        /// Expected version.
        expected: u64,
        /// Unique data (and expiry tag).
        data: u32,
    },
    /// `touch(key)` to expiry tag `tag`.
    Touch {
        /// Key index.
        key: usize,
        /// Unique expiry tag.
        tag: u32,
    },
    /// `delete(key)`.
    Delete {
        /// Key index.
        key: usize,
    },
}

/// What a live record looked like to a read: version, data, expiry tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Seen {
    /// Version.
    pub version: u64,
    /// Data written (`u32::MAX` when the bytes were not a value the history wrote).
    pub data: u32,
    /// Expiry tag (`u32::MAX` when the expiry was not one the history wrote).
    pub tag: u32,
}

/// The response to an [`Op`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ret {
    /// Outcome of a create.
    Create(CreateOutcome),
    /// What a read saw.
    Read(Option<Seen>),
    /// Outcome of an update.
    Update(UpdateOutcome),
    /// Whether a touch found the record.
    Touch(bool),
    /// A delete.
    Delete,
}

/// The sequential model of the contract over `keys` keys (no expiry: every record is far from
/// it).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    records: Vec<Option<Seen>>,
}

impl SequentialSpec for Model {
    type Op = Op;
    type Ret = Ret;

    fn invoke(&mut self, op: &Op) -> Ret {
        match *op {
            Op::Create { key, data } => {
                if self.records[key].is_some() {
                    Ret::Create(CreateOutcome::IdTaken)
                } else {
                    self.records[key] = Some(Seen {
                        version: 1,
                        data,
                        tag: data,
                    });
                    Ret::Create(CreateOutcome::Created)
                }
            }
            Op::Read { key } => Ret::Read(self.records[key]),
            Op::Update {
                current,
                previous,
                expected,
                data,
            } => {
                let Some(record) = self.records[previous] else {
                    return Ret::Update(UpdateOutcome::NotFound);
                };
                if record.version != expected {
                    return Ret::Update(UpdateOutcome::Conflict);
                }
                if current != previous && self.records[current].is_some() {
                    return Ret::Update(UpdateOutcome::IdTaken);
                }
                self.records[previous] = None;
                let version = expected + 1;
                self.records[current] = Some(Seen {
                    version,
                    data,
                    tag: data,
                });
                Ret::Update(UpdateOutcome::Updated { version })
            }
            Op::Touch { key, tag } => match &mut self.records[key] {
                Some(record) => {
                    record.tag = tag;
                    Ret::Touch(true)
                }
                None => Ret::Touch(false),
            },
            Op::Delete { key } => {
                self.records[key] = None;
                Ret::Delete
            }
        }
    }
}

/// One recorded event: task `task` invoked `op`, or received `ret`.
#[derive(Clone, Debug)]
enum Event {
    Invoke(usize, Op),
    Return(usize, Ret),
}

/// A history that is not linearizable: its seed, every event in real-time order, and a smaller
/// sub-history that is still not linearizable.
#[derive(Clone, Debug)]
pub struct NonLinearizable {
    /// The seed that generated the workload.
    pub seed: u64,
    /// The whole history.
    pub history: Vec<String>,
    /// A minimal failing history: operations whose outcome changed nothing (reads, refused
    /// writes) removed one at a time for as long as the rest stays non-linearizable. Removing
    /// them cannot turn a linearizable history into a non-linearizable one, so this is a proof
    /// on its own.
    pub minimal: Vec<String>,
}

impl fmt::Display for NonLinearizable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "history of seed {} is not linearizable; minimal failing history ({} events):",
            self.seed,
            self.minimal.len()
        )?;
        for line in &self.minimal {
            writeln!(f, "    {line}")?;
        }
        write!(f, "(whole history: {} events)", self.history.len())
    }
}

fn render(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| match event {
            Event::Invoke(task, op) => format!("task {task} invokes {op:?}"),
            Event::Return(task, ret) => format!("task {task} returns {ret:?}"),
        })
        .collect()
}

fn linearizable(events: &[Event], keys: usize) -> bool {
    let mut tester = LinearizabilityTester::new(Model {
        records: vec![None; keys],
    });
    for event in events {
        let fed = match event {
            Event::Invoke(task, op) => tester.on_invoke(*task, op.clone()).map(drop),
            Event::Return(task, ret) => tester.on_return(*task, ret.clone()).map(drop),
        };
        if fed.is_err() {
            return false;
        }
    }
    tester.is_consistent()
}

/// Whether an operation's recorded outcome left the model unchanged.
fn changed_nothing(ret: &Ret) -> bool {
    matches!(
        ret,
        Ret::Read(_)
            | Ret::Touch(false)
            | Ret::Create(CreateOutcome::IdTaken)
            | Ret::Update(
                UpdateOutcome::NotFound | UpdateOutcome::Conflict | UpdateOutcome::IdTaken
            )
    )
}

/// The keys an operation names.
fn keys_of(op: &Op) -> (usize, usize) {
    match *op {
        Op::Create { key, .. } | Op::Read { key } | Op::Touch { key, .. } | Op::Delete { key } => {
            (key, key)
        }
        Op::Update {
            current, previous, ..
        } => (current, previous),
    }
}

/// The operations on `key` alone, when that is a sound witness: no successful rotation moved a
/// record into or out of `key` (then the other keys' operations cannot have changed it, and a
/// history whose projection is not linearizable is not linearizable either).
fn project(events: &[Event], key: usize) -> Option<Vec<Event>> {
    let mut open: Vec<Option<Op>> = Vec::new();
    let mut keep = Vec::new();
    for event in events {
        match event {
            Event::Invoke(task, op) => {
                if open.len() <= *task {
                    open.resize(*task + 1, None);
                }
                open[*task] = Some(op.clone());
            }
            Event::Return(task, ret) => {
                let op = open[*task].take().expect("every return has an invocation");
                let (current, previous) = keys_of(&op);
                let moved = current != previous
                    && matches!(ret, Ret::Update(UpdateOutcome::Updated { .. }));
                if moved && (current == key || previous == key) {
                    return None;
                }
                if current == key && previous == key {
                    keep.push((*task, op, ret.clone()));
                }
            }
        }
    }
    // Rebuild the events of the kept operations in their original order.
    let kept: std::collections::HashSet<(usize, String)> = keep
        .iter()
        .map(|(task, op, _)| (*task, format!("{op:?}")))
        .collect();
    Some(
        events
            .iter()
            .filter(|event| match event {
                Event::Invoke(task, op) => kept.contains(&(*task, format!("{op:?}"))),
                Event::Return(..) => true,
            })
            .scan(Vec::<bool>::new(), |open, event| {
                Some(match event {
                    Event::Invoke(task, _) => {
                        if open.len() <= *task {
                            open.resize(*task + 1, false);
                        }
                        open[*task] = true;
                        Some(event.clone())
                    }
                    Event::Return(task, _) => {
                        let was_open = open.get(*task).copied().unwrap_or(false);
                        if let Some(flag) = open.get_mut(*task) {
                            *flag = false;
                        }
                        was_open.then(|| event.clone())
                    }
                })
            })
            .flatten()
            .collect(),
    )
}

/// The smallest failing witness found: single-key projections where sound, then operations that
/// changed nothing dropped one at a time while the rest stays non-linearizable.
fn minimize(events: Vec<Event>, keys: usize) -> Vec<Event> {
    let mut best = shrink(events.clone(), keys);
    for key in 0..keys {
        if let Some(projected) = project(&events, key)
            && !linearizable(&projected, keys)
        {
            let smaller = shrink(projected, keys);
            if smaller.len() < best.len() {
                best = smaller;
            }
        }
    }
    best
}

/// Drops operations that changed nothing, one at a time, while the rest stays
/// non-linearizable.
fn shrink(mut events: Vec<Event>, keys: usize) -> Vec<Event> {
    let mut candidate = 0;
    loop {
        // The `candidate`-th return that changed nothing, and its invocation.
        let Some((ret_at, task)) = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Event::Return(task, ret) if changed_nothing(ret) => Some((i, *task)),
                _ => None,
            })
            .nth(candidate)
        else {
            return events;
        };
        let invoke_at = events[..ret_at]
            .iter()
            .rposition(|e| matches!(e, Event::Invoke(t, _) if *t == task))
            .expect("every return has an invocation");
        let mut smaller = events.clone();
        smaller.remove(ret_at);
        smaller.remove(invoke_at);
        if linearizable(&smaller, keys) {
            candidate += 1;
        } else {
            events = smaller;
        }
    }
}

fn bytes_of(data: u32) -> Vec<u8> {
    format!("history value {data}").into_bytes()
}

fn data_of(bytes: &[u8]) -> u32 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_prefix("history value "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Runs one history of `options` from `seed` and checks it.
async fn one_history(
    (a, b): &(Arc<dyn SessionStore>, Arc<dyn SessionStore>),
    options: HistoryOptions,
    seed: u64,
) -> Result<Option<NonLinearizable>, Failure> {
    let keys: Arc<Vec<SessionKey>> = Arc::new((0..options.keys).map(|_| key()).collect());
    // Far-future expiries, one per tag: `base + tag` milliseconds.
    let base = in_secs(3_600);
    let events = Arc::new(Mutex::new(Vec::new()));
    let barrier = Arc::new(Barrier::new(options.tasks));
    let mut handles = Vec::new();
    for task in 0..options.tasks {
        let store = if task % 2 == 0 {
            Arc::clone(a)
        } else {
            Arc::clone(b)
        };
        let (keys, events, barrier) =
            (Arc::clone(&keys), Arc::clone(&events), Arc::clone(&barrier));
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ task as u64);
        handles.push(tokio::spawn(async move {
            // The version this task last saw per key: a realistic compare-and-swap.
            let mut known = vec![1u64; keys.len()];
            barrier.wait().await;
            for i in 0..options.ops_per_task {
                let unique = (task * options.ops_per_task + i + 1) as u32;
                let k = rng.random_range(0..keys.len());
                let op = match rng.random_range(0..10) {
                    0 | 1 => Op::Create {
                        key: k,
                        data: unique,
                    },
                    2 | 3 => Op::Read { key: k },
                    4..=6 => {
                        let current = if rng.random_bool(0.3) {
                            rng.random_range(0..keys.len())
                        } else {
                            k
                        };
                        let expected = if rng.random_bool(0.8) {
                            known[k]
                        } else {
                            rng.random_range(1..4)
                        };
                        Op::Update {
                            current,
                            previous: k,
                            expected,
                            data: unique,
                        }
                    }
                    7 | 8 => Op::Touch {
                        key: k,
                        tag: unique,
                    },
                    _ => Op::Delete { key: k },
                };
                let at = |tag: u32| base + Duration::milliseconds(i64::from(tag));
                events
                    .lock()
                    .expect("events")
                    .push(Event::Invoke(task, op.clone()));
                let ret = match op {
                    Op::Create { key, data } => Ret::Create(
                        store
                            .create(
                                &keys[key],
                                at(data),
                                Bytes::copy_from_slice(&bytes_of(data)),
                            )
                            .await?,
                    ),
                    Op::Read { key } => Ret::Read(store.read(&keys[key]).await?.map(|r| {
                        let tag = (r.expires_at - base).whole_milliseconds();
                        Seen {
                            version: r.version,
                            data: data_of(&r.data),
                            tag: u32::try_from(tag).unwrap_or(u32::MAX),
                        }
                    })),
                    Op::Update {
                        current,
                        previous,
                        expected,
                        data,
                    } => Ret::Update(
                        store
                            .update(
                                &keys[current],
                                &keys[previous],
                                expected,
                                at(data),
                                Bytes::copy_from_slice(&bytes_of(data)),
                            )
                            .await?,
                    ),
                    Op::Touch { key, tag } => Ret::Touch(store.touch(&keys[key], at(tag)).await?),
                    Op::Delete { key } => {
                        store.delete(&keys[key]).await?;
                        Ret::Delete
                    }
                };
                events
                    .lock()
                    .expect("events")
                    .push(Event::Return(task, ret.clone()));
                match (&op, &ret) {
                    (Op::Read { key }, Ret::Read(Some(seen))) => known[*key] = seen.version,
                    (Op::Create { key, .. }, Ret::Create(CreateOutcome::Created)) => {
                        known[*key] = 1
                    }
                    (
                        Op::Update { current, .. },
                        Ret::Update(UpdateOutcome::Updated { version }),
                    ) => {
                        known[*current] = *version;
                    }
                    _ => {}
                }
            }
            Ok::<_, session_core::Error>(())
        }));
    }
    for handle in handles {
        handle
            .await
            .map_err(|e| Failure::new(format!("a history task panicked: {e}")))??;
    }
    let events = std::mem::take(&mut *events.lock().expect("events"));
    let keys = options.keys;
    let checked = tokio::task::spawn_blocking(move || {
        if linearizable(&events, keys) {
            None
        } else {
            let minimal = render(&minimize(events.clone(), keys));
            Some(NonLinearizable {
                seed,
                history: render(&events),
                minimal,
            })
        }
    })
    .await
    .map_err(|e| Failure::new(format!("the linearizability check panicked: {e}")))?;
    Ok(checked)
}

/// Runs `options.histories` random histories and checks each for linearizability; the first
/// non-linearizable one, with its seed and a minimal failing history, is the error.
pub async fn check_histories(factory: &dyn StoreFactory, options: HistoryOptions) -> CheckResult {
    if options.tasks == 0 || options.keys == 0 {
        return Err(Failure::new(
            "a history needs at least one task and one key",
        ));
    }
    // One pair for every history (fresh keys each time): a pair per history would hold a
    // connection pool per history until the behaviour ends.
    let stores = factory.store_pair().await?;
    for i in 0..u64::from(options.histories) {
        let seed = options.seed.wrapping_add(i);
        if let Some(failure) = one_history(&stores, options, seed).await? {
            return Err(Failure::new(failure.to_string()));
        }
    }
    Ok(())
}

/// Random concurrent histories (create, read, update in place, rotation, touch, delete over
/// three shared keys, four tasks over two instances) are linearizable: every history can be
/// ordered into a sequence the contract's model allows, respecting real time. Fixed seeds
/// ([`HistoryOptions::default`]); `sessionctl check --histories N --seed S` runs more.
async fn histories_are_linearizable(factory: &dyn StoreFactory) -> CheckResult {
    check_histories(factory, HistoryOptions::default()).await
}

/// The behaviours of this file, in order.
pub(crate) const BEHAVIOURS: &[Behaviour] = register!(
    Store:
    histories_are_linearizable,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn op(task: usize, op: Op, ret: Ret) -> [Event; 2] {
        [Event::Invoke(task, op), Event::Return(task, ret)]
    }

    #[test]
    fn the_model_accepts_a_sequential_history_and_rejects_a_fork() {
        let create = Op::Create { key: 0, data: 1 };
        let good: Vec<Event> = [
            op(0, create.clone(), Ret::Create(CreateOutcome::Created)),
            op(1, create.clone(), Ret::Create(CreateOutcome::IdTaken)),
        ]
        .concat();
        assert!(linearizable(&good, 1));
        let bad: Vec<Event> = [
            op(0, create.clone(), Ret::Create(CreateOutcome::Created)),
            op(1, create, Ret::Create(CreateOutcome::Created)),
            op(1, Op::Read { key: 0 }, Ret::Read(None)),
        ]
        .concat();
        assert!(!linearizable(&bad, 1));
        // The read is not needed to prove it: shrinking drops it.
        assert_eq!(shrink(bad, 1).len(), 4);
    }

    #[test]
    fn overlapping_operations_may_take_either_order() {
        // Task 1's read overlaps task 0's create: either answer is linearizable.
        for seen in [
            None,
            Some(Seen {
                version: 1,
                data: 1,
                tag: 1,
            }),
        ] {
            let events = vec![
                Event::Invoke(0, Op::Create { key: 0, data: 1 }),
                Event::Invoke(1, Op::Read { key: 0 }),
                Event::Return(1, Ret::Read(seen)),
                Event::Return(0, Ret::Create(CreateOutcome::Created)),
            ];
            assert!(linearizable(&events, 1));
        }
        // After the create returned, a read that misses it is not.
        let events: Vec<Event> = [
            op(
                0,
                Op::Create { key: 0, data: 1 },
                Ret::Create(CreateOutcome::Created),
            ),
            op(1, Op::Read { key: 0 }, Ret::Read(None)),
        ]
        .concat();
        assert!(!linearizable(&events, 1));
    }
}
