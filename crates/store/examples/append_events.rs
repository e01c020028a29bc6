//! The embedded store's event indexing alone: `append_events` of seccft-sized events in
//! transactions of the server's size, with client ids in rotation; prints CPU per event.
//!
//!     cargo run --release -p ration-store --example append_events -- [clients] [events] [per_txn]

use std::time::Instant;

use ration_domain::UnixTime;
use ration_store::{ConfigStore, SqliteStore, StoredEvent};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: usize| std::env::args().nth(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (clients, events, per_txn) = (arg(1, 10_000), arg(2, 200_000), arg(3, 3584));
    let dir = std::env::temp_dir().join(format!("ration-append-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(&dir.join("ration.db"), ration_domain::Durability::Process).await?;
    let ids: Vec<String> =
        (0..clients).map(|i| format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c))).collect();
    // A packed `seccft` (`ration_store::packed`) as the bench writes it: ~210 bytes (~610 before
    // packing; this example used 590 until then).
    let doc = "x".repeat(210);
    let (mut seq, mut millis) = (0u64, 1_796_484_916_267i64);
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let mut done = 0;
    while done < events {
        let batch: Vec<StoredEvent> = (0..per_txn)
            .map(|_| {
                seq += 1;
                millis += i64::from(seq % 36 == 0);
                StoredEvent {
                    log_id: format!("900{millis:016}{:08}{seq:020}", 12345),
                    date: UnixTime { millis },
                    event_type: "seccft".into(),
                    client_id: Some(ids[seq as usize % ids.len()].clone()),
                    json: doc.clone(),
                }
            })
            .collect();
        store.append_events(&batch).await?;
        done += per_txn;
    }
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
    println!(
        "clients {clients}  events {done}  per txn {per_txn}: {:.2} us CPU/event (whole process), {:.2} us wall/event",
        cpu / done as f64 * 1e6,
        wall / done as f64 * 1e6
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
