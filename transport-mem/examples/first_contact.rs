//! How many nodes a first broadcast misses when nobody knows who is out there: every node
//! announces nothing (as Fed-BioMed v4.4's), the researcher is new, and the first-contact rule
//! decides when the broadcast is over. Latency models from one room to a heavy tail, 3 to 1,000
//! nodes, several seeds each; then the next broadcast, which should find whoever was missed.
//!
//! `cargo run --release -p fedreq-mem --example first_contact [-- --candidates]`

use std::time::Duration;

use fedreq_mem::{Distance, Faults, SimConfig, Simulation, Slow};
use fedreq_protocol::policy::FirstContact;
use fedreq_protocol::{Policy, Request, Submission};

const MS: Duration = Duration::from_millis(1);

/// A latency model: the faults it sets for `n` nodes.
struct Model {
    name: &'static str,
    faults: fn(usize) -> Faults,
}

fn models() -> Vec<Model> {
    vec![
        Model {
            name: "one room (0.1-1 ms)",
            faults: |_| Faults {
                latency: (MS / 10, MS),
                silent: 1.0,
                ..Faults::default()
            },
        },
        Model {
            name: "a country (10-40 ms)",
            faults: |_| Faults {
                latency: (MS / 2, 2 * MS),
                distance: Some(Distance::Uniform(10 * MS, 40 * MS)),
                silent: 1.0,
                ..Faults::default()
            },
        },
        Model {
            name: "heavy tail (lognormal, median 20 ms, sigma 1)",
            faults: |_| Faults {
                latency: (MS / 2, 2 * MS),
                distance: Some(Distance::LogNormal {
                    median: 20 * MS,
                    sigma: 1.0,
                }),
                silent: 1.0,
                ..Faults::default()
            },
        },
        Model {
            name: "a country, one node ten times slower",
            faults: |n| Faults {
                latency: (MS / 2, 2 * MS),
                distance: Some(Distance::Uniform(10 * MS, 40 * MS)),
                slow: Some(Slow {
                    fraction: 1.0 / n as f64,
                    delay: 225 * MS,
                }),
                silent: 1.0,
                ..Faults::default()
            },
        },
        Model {
            name: "busy nodes (one room, 0-50 ms of work)",
            faults: |_| Faults {
                latency: (MS / 10, MS),
                busy: Some(50 * MS),
                silent: 1.0,
                ..Faults::default()
            },
        },
    ]
}

/// What one model gave over its seeds.
struct Row {
    missed_first: f64,
    worst_first: f64,
    missed_next: f64,
    median_ms: f64,
}

fn run(model: &Model, nodes: usize, seeds: u64, rule: FirstContact) -> Row {
    let policy = Policy {
        first_contact: rule,
        ..Policy::default()
    };
    let (mut missed, mut worst, mut missed_next, mut times) = (0.0, 0.0_f64, 0.0, Vec::new());
    for seed in 1..=seeds {
        let mut sim = Simulation::new(SimConfig {
            faults: (model.faults)(nodes),
            ..SimConfig::new(nodes, seed)
        });
        let ping = || Submission::broadcast(Request::ping()).with_policy(policy.clone());
        let first = sim.request(ping()).expect("a valid request");
        let share = 1.0 - first.replies.len() as f64 / nodes as f64;
        missed += share;
        worst = worst.max(share);
        times.push(first.elapsed.as_secs_f64() * 1e3);
        // The stragglers' late replies come in, then the next broadcast expects them.
        sim.run_until_idle();
        let next = sim.request(ping()).expect("a valid request");
        missed_next += 1.0 - next.replies.len() as f64 / nodes as f64;
    }
    times.sort_by(f64::total_cmp);
    Row {
        missed_first: missed / seeds as f64,
        worst_first: worst,
        missed_next: missed_next / seeds as f64,
        median_ms: times[times.len() / 2],
    }
}

fn table(rule: FirstContact) {
    println!(
        "first contact: gap {}x the spread of the answers so far, {:?} to {:?}",
        rule.factor, rule.min, rule.max
    );
    println!(
        "| model | nodes | missed by the first broadcast (mean, worst) | missed by the next | first broadcast, median |"
    );
    println!("|---|---:|---:|---:|---:|");
    for model in models() {
        for nodes in [3, 10, 100, 1000] {
            let seeds = if nodes >= 1000 { 5 } else { 20 };
            let row = run(&model, nodes, seeds, rule);
            println!(
                "| {} | {nodes} | {:.2} % ({:.1} %) | {:.2} % | {:.1} ms |",
                model.name,
                row.missed_first * 100.0,
                row.worst_first * 100.0,
                row.missed_next * 100.0,
                row.median_ms
            );
        }
    }
    println!();
}

fn main() {
    table(FirstContact::default());
    if std::env::args().any(|a| a == "--candidates") {
        for (factor, min, max) in [(1, 5, 1000), (2, 5, 1000), (4, 20, 1000), (2, 50, 1000)] {
            table(FirstContact {
                factor,
                min: min * MS,
                max: max * MS,
            });
        }
    }
}
