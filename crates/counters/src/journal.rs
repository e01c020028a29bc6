//! The counter journal: an append-only file of absolute bucket counts. Each group commit writes one
//! line per bucket counted since the previous group, at its latest count (not one per increment).
//!
//! Line format (tab-separated, `\n`-terminated): `v1 <entity> <entity_id> <window> <start> <count>`,
//! with `entity` ∈ {client, organization}, `window` ∈ {per_minute, per_hour, per_day}, `start` the
//! window's first unix second. Counts are absolute, so replay takes the maximum per bucket and the
//! order of lines does not matter. A torn last line (a crash mid-write) is ignored: its increment
//! was never acknowledged, so no client received that token.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use ration_domain::{BucketKey, EntityKind, Id, UnixTime, Window};

/// Counts by entity: one [`Slot`] holds every window of a client or an organization.
///
/// Why by entity and not by bucket: a client's quota is typically an hour and a day bucket, and
/// with many clients sending each bucket's entry was a cold lookup of its own on every token (a
/// probe of the map's control bytes, a 96-byte entry over two cache lines, and its journal prefix's
/// reference count). One entry per entity takes one probe, and its hour and day counts sit side by
/// side (`scripts/cachesim`, docs/benchmarks.md, session 17). The entry holds nothing else: an owed
/// line copies the key rather than share a prefix text with the slot, whose reference count and
/// text were two more cold lines a token (session 18).
///
/// foldhash rather than SipHash: every token with a quota hashes its entities' keys, and the keys
/// are our own ids, not attacker-chosen (an operator who can create clients can already exhaust
/// anything).
pub type Counts = foldhash::HashMap<EntityKey, Slot>;

/// A client or an organization: what a [`Slot`] counts for.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct EntityKey {
    entity: EntityKind,
    /// Inline ([`Id`]): the map compares it on every lookup.
    id: Id,
}

impl EntityKey {
    pub fn of(key: &BucketKey) -> EntityKey {
        EntityKey { entity: key.entity, id: copy_id(&key.entity_id) }
    }
}

/// By hand rather than derived: see [`copy_id`]. An owed line clones its entity's key.
impl Clone for EntityKey {
    fn clone(&self) -> EntityKey {
        EntityKey { entity: self.entity, id: copy_id(&self.id) }
    }
}

/// `id`, copied as one slice. `Id::clone` (smallvec's `Clone`) pushes the bytes one at a time
/// through a generic `extend`: ~260 instructions for a 32-byte client id in a callgrind profile,
/// twice or more on every token with a quota.
fn copy_id(id: &Id) -> Id {
    Id::from(id.as_str())
}

/// The count that `key` is checked against ([`Slot::count`]); 0 for a bucket never counted (or
/// pruned).
pub fn count(counts: &Counts, key: &BucketKey) -> u64 {
    counts.get(&EntityKey::of(key)).map_or(0, |slot| slot.count(key))
}

/// One entity's counts, a window instance per window, in [`Slot::place`] order, so that the hour
/// and day counts directly follow the key in the map's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    windows: [Instance; 3],
}

impl Default for Slot {
    fn default() -> Slot {
        Slot { windows: [Instance::NONE; 3] }
    }
}

/// The count of one window instance of an entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Instance {
    /// Unix seconds at which the instance started; [`Instance::NONE`] for a window never counted.
    start: i64,
    count: u64,
    /// Where this instance's line is in [`Owed::list`] when `owed_generation` is the list's current
    /// generation (otherwise it has none).
    owed_generation: u64,
    owed_index: usize,
}

impl Instance {
    const NONE: Instance = Instance { start: i64::MIN, count: 0, owed_generation: 0, owed_index: 0 };

    fn is_none(&self) -> bool {
        self.start == i64::MIN
    }

    fn expires_at(&self, window: Window) -> i64 {
        self.start.saturating_add(window.len_secs())
    }
}

impl Slot {
    /// Hour and day first: Auth0's two windows, the ones quotas use (see the `repr(C)` above).
    const ORDER: [Window; 3] = [Window::Hour, Window::Day, Window::Minute];

    fn place(window: Window) -> usize {
        match window {
            Window::Hour => 0,
            Window::Day => 1,
            Window::Minute => 2,
        }
    }

    /// The count that `key` is checked against ([`Slot::counter`]): 0 for an instance later
    /// than the one held, which starts from zero, and the held one's count for it or an earlier one.
    pub fn count(&self, key: &BucketKey) -> u64 {
        let instance = &self.windows[Slot::place(key.window)];
        if key.window_start > instance.start { 0 } else { instance.count }
    }

    /// The count that `key` is checked and counted against.
    ///
    /// A later instance of the window than the one held starts from zero: the held one has ended,
    /// and its lines are owed or written already. An earlier instance than the one held (a request
    /// that read the clock just before a window's end and reached the lock just after another had
    /// started the next) is counted in the held one: it may then count a token against the new
    /// window that belongs to the old, the safe direction, since the old one has ended anyway.
    /// `entity` is the slot's own key, for the journal line the count may owe.
    pub fn counter<'a>(&'a mut self, entity: &'a EntityKey, key: &BucketKey) -> Counter<'a> {
        let instance = &mut self.windows[Slot::place(key.window)];
        if key.window_start > instance.start {
            *instance = Instance { start: key.window_start, ..Instance::NONE };
        }
        Counter { entity, window: key.window, instance }
    }

    /// Forgets window instances that ended by `secs`; false once the slot holds none.
    pub fn prune(&mut self, secs: i64) -> bool {
        for (window, instance) in Slot::ORDER.into_iter().zip(&mut self.windows) {
            if !instance.is_none() && instance.expires_at(window) <= secs {
                *instance = Instance::NONE;
            }
        }
        self.windows.iter().any(|instance| !instance.is_none())
    }

    /// Takes `count` for `window`'s instance starting at `start` when it is later than the held
    /// one, or the same with a higher count (a replay: the journal's counts are absolute).
    fn merge(&mut self, window: Window, start: i64, count: u64) {
        let instance = &mut self.windows[Slot::place(window)];
        if start > instance.start {
            *instance = Instance { start, count, ..Instance::NONE };
        } else if start == instance.start {
            instance.count = instance.count.max(count);
        }
    }

    /// Appends a line for each window instance held to `out`; `entity` is the slot's key.
    pub fn encode(&self, entity: &EntityKey, out: &mut String) {
        for (window, instance) in Slot::ORDER.into_iter().zip(&self.windows) {
            if !instance.is_none() {
                encode_line(out, entity, window, instance.start, instance.count);
            }
        }
    }
}

/// One window instance's count in a [`Slot`], as [`Slot::counter`] found it.
pub struct Counter<'a> {
    entity: &'a EntityKey,
    window: Window,
    instance: &'a mut Instance,
}

impl Counter<'_> {
    pub fn get(&self) -> u64 {
        self.instance.count
    }

    pub fn add(&mut self) {
        self.instance.count += 1;
    }

    /// Gives back a count taken by [`Counter::add`].
    pub fn undo(&mut self) {
        self.instance.count = self.instance.count.saturating_sub(1);
    }
}

fn encode_line(out: &mut String, entity: &EntityKey, window: Window, start: i64, count: u64) {
    out.push_str("v1\t");
    out.push_str(entity.entity.name());
    out.push('\t');
    escape_into(out, &entity.id);
    out.push('\t');
    out.push_str(window.name());
    out.push('\t');
    out.push_str(itoa::Buffer::new().format(start));
    out.push('\t');
    out.push_str(itoa::Buffer::new().format(count));
    out.push('\n');
}

/// A journal line owed: a window instance of an entity, at a count.
#[derive(Clone, Debug)]
pub struct OwedLine {
    entity: EntityKey,
    window: Window,
    start: i64,
    count: u64,
}

/// The lines owed to the journal: every bucket counted since the writer last took them, once each,
/// at its latest count.
///
/// Why not a line per increment: a bucket counted by many requests of one group needs only its
/// last count (replay keeps the maximum). Formatting and writing a line per bucket per token was
/// most of the embedded counters' cost; the client that burns its quota, the case quotas exist
/// for, now costs one line per group however fast it asks.
#[derive(Debug)]
pub struct Owed {
    list: Vec<OwedLine>,
    /// Bumped each time the writer takes `list`, which makes every instance's index stale at once
    /// without visiting the slots. Starts at 1: a new instance (generation 0) owes nothing.
    generation: u64,
}

impl Default for Owed {
    fn default() -> Owed {
        Owed { list: Vec::new(), generation: 1 }
    }
}

impl Owed {
    /// Records that `counter`'s current count must reach the journal.
    pub fn note(&mut self, counter: &mut Counter<'_>) {
        let instance = &mut *counter.instance;
        match self.list.get_mut(instance.owed_index) {
            Some(line) if instance.owed_generation == self.generation => line.count = instance.count,
            _ => {
                instance.owed_generation = self.generation;
                instance.owed_index = self.list.len();
                self.list.push(OwedLine {
                    entity: counter.entity.clone(),
                    window: counter.window,
                    start: instance.start,
                    count: instance.count,
                });
            }
        }
    }

    /// Takes the owed lines, leaving the list empty (with `spare`'s capacity, so that neither side
    /// allocates once warm).
    pub fn take(&mut self, spare: Vec<OwedLine>) -> Vec<OwedLine> {
        self.generation += 1;
        std::mem::replace(&mut self.list, spare)
    }

    /// Puts back lines whose write failed: they are still owed. A bucket may then appear twice;
    /// replay keeps the higher count.
    pub fn restore(&mut self, lines: impl IntoIterator<Item = OwedLine>) {
        self.list.extend(lines);
    }
}

/// Appends the lines of `owed` (as taken by [`Owed::take`]) to `out`.
pub fn encode_owed(out: &mut String, owed: &[OwedLine]) {
    for line in owed {
        encode_line(out, &line.entity, line.window, line.start, line.count);
    }
}

/// Ids are generated by us and plain, but a bootstrap client id comes from the environment and may
/// hold anything; `%`, tab and newline are escaped so a line always splits the same way.
fn escape_into(out: &mut String, id: &str) {
    if !id.bytes().any(|b| matches!(b, b'%' | b'\t' | b'\n' | b'\r')) {
        out.push_str(id);
        return;
    }
    for ch in id.chars() {
        match ch {
            '%' => out.push_str("%25"),
            '\t' => out.push_str("%09"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            _ => out.push(ch),
        }
    }
}

fn unescape(id: &str) -> String {
    id.replace("%09", "\t").replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")
}

fn decode(line: &str) -> Option<(BucketKey, u64)> {
    let mut fields = line.split('\t');
    if fields.next()? != "v1" {
        return None;
    }
    let entity = EntityKind::parse(fields.next()?)?;
    let entity_id = unescape(fields.next()?);
    let window = Window::parse(fields.next()?)?;
    let window_start = fields.next()?.parse().ok()?;
    let count = fields.next()?.parse().ok()?;
    if fields.next().is_some() {
        return None;
    }
    Some((BucketKey { entity, entity_id: entity_id.as_str().into(), window, window_start }, count))
}

/// Reads the journal at `path` (missing file: empty), keeping the highest count of each bucket
/// that has not expired at `now`.
pub fn replay(path: &Path, now: UnixTime) -> std::io::Result<Counts> {
    let mut counts = Counts::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(counts),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut n_bad = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        // Only complete lines count: a line without its newline is a torn, unacknowledged write.
        let Some(body) = line.strip_suffix(b"\n") else { break };
        match std::str::from_utf8(body).ok().and_then(decode) {
            Some((key, count)) if key.expires_at() > now.secs() => {
                let slot = counts.entry(EntityKey::of(&key)).or_default();
                slot.merge(key.window, key.window_start, count);
            }
            Some(_) => {}
            None => n_bad += 1,
        }
    }
    if n_bad > 0 {
        tracing::warn!(n_bad, path = %path.display(), "ignored unreadable counter journal lines");
    }
    Ok(counts)
}

/// Writes `counts` as a fresh journal next to `path` and atomically replaces it. Returns the file,
/// open for appending.
pub fn rewrite(path: &Path, counts: &Counts, flush: bool) -> std::io::Result<File> {
    let tmp: PathBuf = path.with_extension("tmp");
    let mut text = String::with_capacity(counts.len() * 128);
    for (entity, slot) in counts {
        slot.encode(entity, &mut text);
    }
    {
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        if flush {
            file.sync_all()?;
        }
    }
    // Atomic for a process crash either way; `flush` makes it so for a power loss too. Without
    // it the rewrite costs no `fsync`, which matters because appends wait while it runs.
    std::fs::rename(&tmp, path)?;
    if flush && let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(id: &str, window: Window, start: i64) -> BucketKey {
        BucketKey { entity: EntityKind::Client, entity_id: id.into(), window, window_start: start }
    }

    fn key(id: &str, start: i64) -> BucketKey {
        bucket(id, Window::Hour, start)
    }

    /// Counts `key` once, as a grant does, noting its line; returns its count after.
    fn add(counts: &mut Counts, owed: &mut Owed, key: &BucketKey) -> u64 {
        let entity = EntityKey::of(key);
        let slot = counts.entry(entity.clone()).or_default();
        let mut counter = slot.counter(&entity, key);
        counter.add();
        owed.note(&mut counter);
        counter.get()
    }

    fn line(key: &BucketKey, count: u64) -> String {
        let mut out = String::new();
        encode_line(&mut out, &EntityKey::of(key), key.window, key.window_start, count);
        out
    }

    #[test]
    fn lines_round_trip_even_with_odd_ids() {
        for id in ["abc", "tab\there", "nl\nx", "100%", "%09literal"] {
            let s = line(&key(id, 3600), 42);
            let line = s.strip_suffix('\n').unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(decode(line), Some((key(id, 3600), 42)));
        }
    }

    fn owed_lines(owed: &mut Owed) -> String {
        let mut text = String::new();
        encode_owed(&mut text, &owed.take(Vec::new()));
        text
    }

    #[test]
    fn a_bucket_owes_one_line_per_group_at_its_latest_count() {
        let (a, b) = (key("a", 3600), key("b", 3600));
        let mut counts = Counts::default();
        let mut owed = Owed::default();
        for k in [&a, &b, &a, &a] {
            add(&mut counts, &mut owed, k);
        }
        assert_eq!(owed_lines(&mut owed), line(&a, 3) + &line(&b, 1));
        assert_eq!(owed_lines(&mut owed), "", "taken lines are owed no more");

        // The next group: only what was counted since, even though `a`'s old index is still set.
        add(&mut counts, &mut owed, &b);
        let taken = owed.take(Vec::new());
        let mut text = String::new();
        encode_owed(&mut text, &taken);
        assert_eq!(text, line(&b, 2));

        // A failed write puts its lines back; a bucket counted meanwhile may then appear twice.
        add(&mut counts, &mut owed, &b);
        owed.restore(taken);
        assert_eq!(owed_lines(&mut owed), line(&b, 3) + &line(&b, 2));
    }

    #[test]
    fn an_entity_counts_each_window_apart_and_a_new_instance_from_zero() {
        let (hour, next_hour, day) = (key("a", 3600), key("a", 7200), bucket("a", Window::Day, 0));
        let mut counts = Counts::default();
        let mut owed = Owed::default();
        assert_eq!(add(&mut counts, &mut owed, &hour), 1);
        assert_eq!(add(&mut counts, &mut owed, &day), 1);
        assert_eq!(add(&mut counts, &mut owed, &hour), 2);
        assert_eq!(add(&mut counts, &mut owed, &next_hour), 1, "the next hour starts from zero");
        assert_eq!(add(&mut counts, &mut owed, &day), 2, "the day carries on");
        // Within one group, the ended hour keeps its line and the new one gets its own.
        assert_eq!(owed_lines(&mut owed), line(&hour, 2) + &line(&day, 2) + &line(&next_hour, 1));

        // A request that read the clock in the ended hour is counted in the new one.
        assert_eq!(add(&mut counts, &mut owed, &hour), 2);
        assert_eq!(owed_lines(&mut owed), line(&next_hour, 2));
        assert_eq!(count(&counts, &hour), 2, "the ended hour reads as the one it is counted in");
        assert_eq!(count(&counts, &next_hour), 2);
        assert_eq!(count(&counts, &day), 2);
        assert_eq!(counts.len(), 1, "one slot for the entity");
    }

    #[test]
    fn a_merge_keeps_the_latest_instance_at_its_highest_count() {
        let a = key("a", 7200);
        let mut slot = Slot::default();
        slot.merge(Window::Hour, 7200, 5);
        slot.merge(Window::Hour, 3600, 9);
        slot.merge(Window::Hour, 7200, 3);
        assert_eq!(slot.count(&a), 5, "an earlier instance is ignored");
        slot.merge(Window::Hour, 10_800, 1);
        assert_eq!((slot.count(&key("a", 10_800)), slot.count(&key("a", 14_400))), (1, 0));
    }

    #[test]
    fn prune_forgets_ended_instances_and_then_the_slot() {
        let mut counts = Counts::default();
        let mut owed = Owed::default();
        add(&mut counts, &mut owed, &key("a", 3600));
        add(&mut counts, &mut owed, &bucket("a", Window::Day, 0));
        let slot = counts.get_mut(&EntityKey::of(&key("a", 3600))).unwrap();
        assert!(slot.prune(7199));
        assert_eq!(slot.count(&key("a", 3600)), 1);
        assert!(slot.prune(7200), "the day is still counting");
        assert_eq!(slot.count(&key("a", 3600)), 0);
        assert_eq!(slot.count(&bucket("a", Window::Day, 0)), 1);
        assert!(!slot.prune(86_400), "nothing left");
    }

    #[test]
    fn replay_takes_max_drops_expired_and_torn_lines() {
        let dir = std::env::temp_dir().join(format!("ration-journal-{}-{}", std::process::id(), line!()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("counters.journal");
        let s = [
            line(&key("a", 7200), 3),
            line(&key("a", 7200), 5),
            line(&key("a", 7200), 4),
            line(&key("a", 3600), 8),
            line(&bucket("a", Window::Day, 0), 7),
            line(&key("old", 0), 9),
            "v1\tclient\ttorn\tper_hour\t7200\t99".to_owned(), // no newline: torn
        ]
        .concat();
        std::fs::write(&path, s).unwrap();
        let counts = replay(&path, UnixTime::from_secs(7300)).unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!(count(&counts, &key("a", 7200)), 5);
        assert_eq!(count(&counts, &key("a", 3600)), 5, "the expired line is dropped, not merged");
        assert_eq!(count(&counts, &bucket("a", Window::Day, 0)), 7);
        assert_eq!(count(&counts, &key("torn", 7200)), 0);
        let _ = rewrite(&path, &counts, true).unwrap();
        assert_eq!(replay(&path, UnixTime::from_secs(7300)).unwrap(), counts);
    }
}
