//! What the completeness audit adds per record, in instructions: the hot-path benchmark's
//! work run a given number of rounds over 10,000 profile updates, plain or audited. Run under
//! `valgrind --tool=callgrind` at two round counts; the difference per record is the cost,
//! repeatable whatever else the machine is doing (`bench/audit_cost.sh`).

use std::hint::black_box;

#[path = "../benches/corpus/mod.rs"]
#[allow(dead_code)]
mod corpus;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let batch = corpus::records(false);
    match mode.as_str() {
        "plain" => {
            let config = corpus::json_feed();
            let extractor = config.extractor(300_000);
            let mut tracker =
                freshwatch::tracker::Tracker::new(std::slice::from_ref(&config), corpus::BASE_MS);
            for _ in 0..rounds {
                black_box(corpus::run(&extractor, &mut tracker, &batch));
            }
        }
        "audited" => {
            let mut audited = corpus::Audited::new();
            for _ in 0..rounds {
                black_box(audited.run(&batch));
            }
        }
        _ => {
            eprintln!("usage: audit_cost plain|audited ROUNDS");
            std::process::exit(2);
        }
    }
}
