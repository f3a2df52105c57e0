//! The training-plan check, as the researcher and the node run it, on plans of 1 kB, 1 MB
//! and the largest allowed, and on 1 MB of the shapes that cost some checkers time out of
//! proportion. `cargo bench -p fedreq --bench plan`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fedreq::plan::{Python, MAX_PLAN_BYTES};
use fedreq::TrainingPlan;

/// `unit(i)` repeated up to `size` bytes.
fn repeated(size: usize, unit: impl Fn(usize) -> String) -> String {
    let mut plan = String::new();
    for i in 0.. {
        let next = unit(i);
        if plan.len() + next.len() > size {
            return plan;
        }
        plan.push_str(&next);
    }
    unreachable!()
}

/// One ordinary training-plan class after another.
fn classes(size: usize) -> String {
    repeated(size, |i| {
        format!(
            "class Plan{i}(TorchTrainingPlan):\n    def training_step(self, data, target):\n        loss = (self.model()(data) - target) ** 2\n        return loss.mean()\n\n"
        )
    })
}

/// A pattern of `n` parts from `part(i)`, in one `match`.
fn one_pattern(size: usize, open: &str, part: fn(usize) -> String, close: &str) -> String {
    let head = format!("match x:\n    case {open}");
    let tail = format!("{close}:\n        pass\n");
    let parts = repeated(size - head.len() - tail.len(), |i| format!("{}, ", part(i)));
    format!("{head}{parts}{tail}")
}

fn check(c: &mut Criterion) {
    const MB: usize = 1 << 20;
    let mut group = c.benchmark_group("plan_check");
    group.sample_size(10);
    let mut plans = vec![
        ("classes_1kB".to_owned(), classes(1 << 10)),
        ("classes_1MB".to_owned(), classes(MB)),
        ("classes_largest".to_owned(), classes(MAX_PLAN_BYTES)),
        (
            "names_1MB".to_owned(),
            repeated(MB, |i| format!("x{i} = y{i}\n")),
        ),
    ];
    for (name, open, part, close) in [
        (
            "mapping_pattern_1MB",
            "{",
            (|i| format!("{i}: _")) as fn(usize) -> String,
            "}",
        ),
        ("sequence_pattern_1MB", "[", |i| format!("a{i}"), "]"),
        ("class_pattern_1MB", "C(", |i| format!("a{i}=_"), ")"),
    ] {
        plans.push((name.to_owned(), one_pattern(MB, open, part, close)));
    }
    for (name, source) in plans {
        group.throughput(Throughput::Bytes(source.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                TrainingPlan::from_bytes(
                    "plan.py",
                    black_box(source.as_bytes().to_vec()),
                    Python::V3_10,
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
