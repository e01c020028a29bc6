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
use std::sync::Arc;

use ration_domain::{BucketKey, EntityKind, UnixTime, Window};

/// Counts by bucket. foldhash rather than SipHash: every token with a quota hashes each of its
/// bucket keys (once in consume, once more in the pre-check when Actions are bound), and the keys
/// are our own ids, not attacker-chosen (an operator who can create clients can already exhaust
/// anything).
pub type Counts = foldhash::HashMap<BucketKey, Slot>;

/// A bucket's count; 0 for a bucket never counted (or pruned).
pub fn count(counts: &Counts, key: &BucketKey) -> u64 {
    counts.get(key).map_or(0, |slot| slot.count)
}

/// One bucket's count, with the part of its journal lines that never changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub count: u64,
    /// `v1\t<entity>\t<id>\t<window>\t<start>\t`, built once per bucket: building the whole
    /// line each time (escaping the id, formatting the start) was the largest part of the
    /// counters' cost in an instruction profile. Shared with the [`Owed`] entries of the bucket.
    prefix: Arc<str>,
    /// Where this bucket's entry is in [`Owed::list`] when `owed_generation` is the list's current
    /// generation (otherwise it has none).
    owed_generation: u64,
    owed_index: usize,
}

impl Slot {
    pub fn new(key: &BucketKey, count: u64) -> Slot {
        let mut prefix = String::with_capacity(key.entity_id.len() + 40);
        encode_prefix(&mut prefix, key);
        Slot { count, prefix: prefix.into(), owed_generation: 0, owed_index: 0 }
    }

    /// Appends this bucket's line at its current count to `out`.
    pub fn encode(&self, out: &mut String) {
        encode_line(out, &self.prefix, self.count);
    }
}

fn encode_line(out: &mut String, prefix: &str, count: u64) {
    out.push_str(prefix);
    out.push_str(itoa::Buffer::new().format(count));
    out.push('\n');
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
    list: Vec<(Arc<str>, u64)>,
    /// Bumped each time the writer takes `list`, which makes every slot's index stale at once
    /// without visiting the slots. Starts at 1: a new slot (generation 0) owes nothing.
    generation: u64,
}

impl Default for Owed {
    fn default() -> Owed {
        Owed { list: Vec::new(), generation: 1 }
    }
}

impl Owed {
    /// Records that `slot`'s current count must reach the journal.
    pub fn note(&mut self, slot: &mut Slot) {
        match self.list.get_mut(slot.owed_index) {
            Some(entry) if slot.owed_generation == self.generation => entry.1 = slot.count,
            _ => {
                slot.owed_generation = self.generation;
                slot.owed_index = self.list.len();
                self.list.push((slot.prefix.clone(), slot.count));
            }
        }
    }

    /// Takes the owed lines, leaving the list empty (with `spare`'s capacity, so that neither side
    /// allocates once warm).
    pub fn take(&mut self, spare: Vec<(Arc<str>, u64)>) -> Vec<(Arc<str>, u64)> {
        self.generation += 1;
        std::mem::replace(&mut self.list, spare)
    }

    /// Puts back lines whose write failed: they are still owed. A bucket may then appear twice;
    /// replay keeps the higher count.
    pub fn restore(&mut self, lines: impl IntoIterator<Item = (Arc<str>, u64)>) {
        self.list.extend(lines);
    }
}

/// Appends the lines of `owed` (as taken by [`Owed::take`]) to `out`.
pub fn encode_owed(out: &mut String, owed: &[(Arc<str>, u64)]) {
    for (prefix, count) in owed {
        encode_line(out, prefix, *count);
    }
}

fn encode_prefix(out: &mut String, key: &BucketKey) {
    let mut n = itoa::Buffer::new();
    out.push_str("v1\t");
    out.push_str(key.entity.name());
    out.push('\t');
    escape_into(out, &key.entity_id);
    out.push('\t');
    out.push_str(key.window.name());
    out.push('\t');
    out.push_str(n.format(key.window_start));
    out.push('\t');
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
                let slot = counts.entry(key).or_insert_with_key(|key| Slot::new(key, count));
                slot.count = slot.count.max(count);
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
    let mut text = String::with_capacity(counts.len() * 64);
    for slot in counts.values() {
        slot.encode(&mut text);
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

    fn encode(out: &mut String, key: &BucketKey, count: u64) {
        Slot::new(key, count).encode(out);
    }

    fn key(id: &str, start: i64) -> BucketKey {
        BucketKey { entity: EntityKind::Client, entity_id: id.into(), window: Window::Hour, window_start: start }
    }

    #[test]
    fn lines_round_trip_even_with_odd_ids() {
        for id in ["abc", "tab\there", "nl\nx", "100%", "%09literal"] {
            let mut s = String::new();
            encode(&mut s, &key(id, 3600), 42);
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
            let slot = counts.entry(k.clone()).or_insert_with_key(|k| Slot::new(k, 0));
            slot.count += 1;
            owed.note(slot);
        }
        let mut expected = String::new();
        encode(&mut expected, &a, 3);
        encode(&mut expected, &b, 1);
        assert_eq!(owed_lines(&mut owed), expected);
        assert_eq!(owed_lines(&mut owed), "", "taken lines are owed no more");

        // The next group: only what was counted since, even though `a`'s old index is still set.
        let slot = counts.get_mut(&b).unwrap();
        slot.count += 1;
        owed.note(slot);
        let mut expected = String::new();
        encode(&mut expected, &b, 2);
        let taken = owed.take(Vec::new());
        let mut text = String::new();
        encode_owed(&mut text, &taken);
        assert_eq!(text, expected);

        // A failed write puts its lines back; a bucket counted meanwhile may then appear twice.
        let slot = counts.get_mut(&b).unwrap();
        slot.count += 1;
        owed.note(slot);
        owed.restore(taken);
        let mut expected = String::new();
        encode(&mut expected, &b, 3);
        encode(&mut expected, &b, 2);
        assert_eq!(owed_lines(&mut owed), expected);
    }

    #[test]
    fn replay_takes_max_drops_expired_and_torn_lines() {
        let dir = std::env::temp_dir().join(format!("ration-journal-{}-{}", std::process::id(), line!()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("counters.journal");
        let mut s = String::new();
        encode(&mut s, &key("a", 7200), 3);
        encode(&mut s, &key("a", 7200), 5);
        encode(&mut s, &key("a", 7200), 4);
        encode(&mut s, &key("old", 0), 9);
        s.push_str("v1\tclient\ttorn\tper_hour\t7200\t99"); // no newline: torn
        std::fs::write(&path, s).unwrap();
        let counts = replay(&path, UnixTime::from_secs(7300)).unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[&key("a", 7200)].count, 5);
        let _ = rewrite(&path, &counts, true).unwrap();
        assert_eq!(replay(&path, UnixTime::from_secs(7300)).unwrap(), counts);
    }
}
