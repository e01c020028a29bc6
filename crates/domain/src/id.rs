//! [`Id`]: the key type of the maps the token path looks clients and buckets up in.

/// An entity id (client, organization, client grant) held inline, as a map key.
///
/// Why not `String`: a hash map compares the key it finds with the one looked up, and a `String`
/// key's bytes live in their own heap allocation. With 10 000 clients those allocations are cold,
/// and every token paid a cache miss per map for the comparison alone (the catalog's clients, the
/// quota counters, the metrics' per-client counts; `memcmp` was the largest single item of what
/// 10 000 clients cost over 10 in a sampled profile, docs/benchmarks.md). Ration's generated ids are
/// at most 32 bytes (client ids are 32 alphanumerics, `org_`/`cgr_` ids 20), so they sit in the
/// map's own slot and the comparison reads the cache line the lookup already brought in. A longer
/// id (there are none today) still works: it spills to the heap.
///
/// It hashes, compares and borrows as `str`, so maps keyed by it are looked up by `&str`.
pub type Id = smallstr::SmallString<[u8; 32]>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::Id;

    #[test]
    fn hashes_and_borrows_as_str() {
        let hasher = foldhash::fast::FixedState::default();
        let id = Id::from("0123456789abcdef0123456789ABCDEF");
        assert!(!id.spilled(), "a client id fits inline");
        assert_eq!(hasher.hash_one(&id), hasher.hash_one("0123456789abcdef0123456789ABCDEF"));
        let mut map = foldhash::HashMap::default();
        map.insert(id, 1);
        assert_eq!(map.get("0123456789abcdef0123456789ABCDEF"), Some(&1));
        let long = Id::from("x".repeat(40).as_str());
        assert!(long.spilled());
        assert_eq!(long.as_str(), "x".repeat(40));
    }
}
