//! The event journal: append-only segment files that make events durable with one `write(2)` per
//! group, before they are indexed into the store in the background.
//!
//! Why: committing each group of `seccft` events to SQLite on the request path cost a transaction
//! (five index updates per row, WAL frames, periodic checkpoints) and two thread hand-offs per
//! token, and that wait, not CPU, bounded throughput. Appending the finished JSON to a file is a
//! single system call; the store then takes the events in large batches, off the request path.
//!
//! Format: one event per line, `<date millis> <log_id> <event JSON>\n`. The JSON is packed
//! (`ration_store::packed`): it leaves its `log_id` and `date` to the line, and holds control bytes
//! but never a newline. Lines written before packing, `<date millis> <event JSON>`, still replay.
//! Segments are named `events-<n>.journal`; the writer starts a new one past [`SEGMENT_BYTES`], and
//! a segment is deleted once every event in it is in the store. At start-up every remaining
//! segment is replayed into the store (inserts of `log_id`s already there are skipped) and deleted.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use ration_domain::{Durability, UnixTime};
use ration_store::StoredEvent;

/// Start a new segment past this size, so that finished ones can be deleted while the server runs.
pub const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;

const PREFIX: &str = "events-";
const SUFFIX: &str = ".journal";

/// The segment currently appended to.
pub struct Segment {
    dir: PathBuf,
    number: u64,
    file: File,
    written: u64,
    durability: Durability,
}

impl Segment {
    /// Creates segment `number` in `dir` (empty).
    pub fn create(dir: &Path, number: u64, durability: Durability) -> std::io::Result<Segment> {
        let path = segment_path(dir, number);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if durability == Durability::Fsync {
            // The new name must survive a power loss too, or its events would.
            File::open(dir)?.sync_all()?;
        }
        Ok(Segment { dir: dir.to_owned(), number, file, written: 0, durability })
    }

    pub fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.number)
    }

    /// Appends the events in one write. They are durable against a process crash when this
    /// returns (in the kernel's page cache), and against power loss with [`Durability::Fsync`].
    pub fn append(&mut self, events: &[StoredEvent]) -> std::io::Result<()> {
        let len: usize = events.iter().map(|e| e.json.len() + e.log_id.len() + 23).sum();
        let mut buf = Vec::with_capacity(len);
        for event in events {
            encode(&mut buf, event);
        }
        self.file.write_all(&buf)?;
        if self.durability == Durability::Fsync {
            self.file.sync_data()?;
        }
        self.written += buf.len() as u64;
        Ok(())
    }

    /// Whether it is time for [`Segment::next`].
    pub fn is_full(&self) -> bool {
        self.written >= SEGMENT_BYTES
    }

    /// The following segment.
    pub fn next(&self) -> std::io::Result<Segment> {
        Segment::create(&self.dir, self.number + 1, self.durability)
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{number:020}{SUFFIX}"))
}

fn encode(buf: &mut Vec<u8>, event: &StoredEvent) {
    buf.extend_from_slice(itoa::Buffer::new().format(event.date.millis).as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(event.log_id.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(event.json.as_bytes());
    buf.push(b'\n');
}

/// Parses one line back into the stored form. `None` for a line cut short by a power loss (the
/// only way a line can be damaged: a process crash cannot interrupt a `write(2)` half way).
fn decode(line: &str) -> Option<StoredEvent> {
    let (millis, rest) = line.split_once(' ')?;
    let date = UnixTime::from_millis(millis.parse().ok()?);
    // A line written before packing has no `log_id` of its own: its JSON starts right away.
    let (line_log_id, json) = match rest.split_once(' ') {
        Some((log_id, json)) if !rest.starts_with('{') => (log_id, json),
        _ => ("", rest),
    };
    // Parsed whole, packed or not, so that a line cut short is found; kept as written (the store
    // unpacks what it reads).
    let columns = ration_store::packed::Columns { log_id: line_log_id, date };
    let value: serde_json::Value = serde_json::from_str(&ration_store::packed::unpack(json, columns)).ok()?;
    let text = |name: &str| value.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
    Some(StoredEvent {
        log_id: text("log_id").filter(|id| !id.is_empty())?,
        date,
        event_type: text("type").unwrap_or_default(),
        client_id: text("client_id"),
        json: json.to_owned(),
    })
}

/// The segments in `dir`, oldest first.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((number, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// Reads every event of one segment, skipping damaged lines (logged).
pub fn read_segment(path: &Path) -> std::io::Result<Vec<StoredEvent>> {
    let mut events = Vec::new();
    for (n, line) in BufReader::new(File::open(path)?).lines().enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match decode(&line) {
            Some(event) => events.push(event),
            None => tracing::warn!(path = %path.display(), line = n + 1, "skipping a damaged event journal line"),
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> StoredEvent {
        let log_id = format!("900{n:016}");
        StoredEvent {
            log_id: log_id.clone(),
            date: UnixTime::from_millis(1_800_000_000_000 + n),
            event_type: "seccft".into(),
            client_id: (n % 2 == 0).then(|| format!("c{n}")),
            json: serde_json::json!({
                "log_id": log_id, "type": "seccft", "client_id": (n % 2 == 0).then(|| format!("c{n}")),
                "description": "line\nbreak \"quoted\"",
            })
            .to_string(),
        }
    }

    #[test]
    fn segments_round_trip_in_order_and_skip_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("ration-event-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut first = Segment::create(&dir, 7, Durability::Process).unwrap();
        first.append(&[event(1), event(2)]).unwrap();
        let mut second = first.next().unwrap();
        // A packed event leaves its `log_id` and `date` to the line.
        let packed = StoredEvent { json: "{\u{17}\"type\":\"seccft\"\u{7}}".into(), ..event(4) };
        second.append(&[event(3), packed.clone()]).unwrap();
        let mut file = std::fs::OpenOptions::new().append(true).open(second.path()).unwrap();
        // A line written before packing: no `log_id` of its own.
        file.write_all(b"1800000000005 {\"log_id\":\"9005\",\"type\":\"sapi\"}\n").unwrap();
        // A power loss can leave a partial last line.
        file.write_all(b"1800000 9006 {\x17\"ty").unwrap();
        std::fs::write(dir.join("unrelated.txt"), "x").unwrap();

        let found = segments(&dir).unwrap();
        assert_eq!(found.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![7, 8]);
        let mut all = Vec::new();
        for (_, path) in &found {
            all.extend(read_segment(path).unwrap());
        }
        let legacy = StoredEvent {
            log_id: "9005".into(),
            date: UnixTime::from_millis(1_800_000_000_005),
            event_type: "sapi".into(),
            client_id: None,
            json: r#"{"log_id":"9005","type":"sapi"}"#.into(),
        };
        let packed_read = StoredEvent { client_id: None, ..packed };
        assert_eq!(all, vec![event(1), event(2), event(3), packed_read, legacy]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
