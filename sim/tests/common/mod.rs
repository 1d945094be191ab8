//! Helpers shared by the integration tests of caq-sim.

/// A test's seed: `CAQ_SEED` (decimal or `0x` hex) if set, else random; printed either way so a
/// failing run can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("CAQ_SEED") {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("CAQ_SEED={text}: not a u64: {e}"))
        }
        Err(_) => rand::random(),
    };
    println!("{test}: CAQ_SEED={seed}");
    seed
}
