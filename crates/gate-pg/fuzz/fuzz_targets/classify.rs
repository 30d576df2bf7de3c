//! Arbitrary text through the classifier and the shape cache: no panic, and a cached shape
//! never classifies differently from the text itself.
#![no_main]

use countersign_gate_pg::classify::classify;
use countersign_gate_pg::shape::ShapeCache;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|text: &str| {
    static CACHE: OnceLock<ShapeCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| ShapeCache::new(1024));
    let direct = classify(text);
    let cached = cache.classify(text);
    assert_eq!(direct.kind, cached.kind, "{text:?}");
    assert_eq!(direct.tables, cached.tables, "{text:?}");
});
