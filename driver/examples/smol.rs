//! A third adapter, in a few lines: the researcher core driven by smol, over the in-memory
//! broker, completing a ping to three nodes. Read it first when embedding fedreq in another
//! runtime: the loop is the same over any network.
//!
//! Run it with `cargo run -p fedreq-driver --example smol`.

use std::time::Instant;

use fedreq_driver::{Order, ResearcherDriver};
use fedreq_mem::sim::simulated_datasets;
use fedreq_mem::{Broker, Client, NodeDriver, Publish};
use fedreq_protocol::node::FetchResult;
use fedreq_protocol::{topic, NodeConfig, Request, ResearcherConfig, Submission};
use smol::future;

enum Step {
    Publish(Publish),
    Order(Order),
    Timer,
    Stop,
}

/// The whole adapter: wait for a publish, an order or the wake; feed it in; drain.
async fn drive(mut driver: ResearcherDriver, client: Client) {
    let orders = driver.orders().clone();
    loop {
        let wake = driver.next_wake();
        let publish = async {
            client
                .inbox()
                .recv_async()
                .await
                .map_or(Step::Stop, Step::Publish)
        };
        let order = async { orders.recv_async().await.map_or(Step::Stop, Step::Order) };
        let timer = async {
            match wake {
                Some(at) => smol::Timer::at(at).await,
                None => future::pending::<Instant>().await,
            };
            Step::Timer
        };
        match future::or(future::or(publish, order), timer).await {
            Step::Publish(p) => driver.handle_publish(&p.topic, &p.payload),
            Step::Order(order) => driver.handle_order(order),
            Step::Timer => driver.handle_timeout(),
            Step::Stop => return,
        }
        driver.drain(|transmit| {
            let _ = client.publish(&transmit.topic, transmit.payload);
        });
    }
}

pub fn main() {
    let broker = Broker::new();
    let nodes: Vec<String> = (0..3).map(|i| format!("node-{i}")).collect();
    let configs = nodes
        .iter()
        .enumerate()
        .map(|(i, id)| NodeConfig::new(id.clone(), simulated_datasets(i)))
        .collect();
    let _nodes = NodeDriver::start(&broker, configs, |_| FetchResult::Status(404)).unwrap();

    let client = broker.connect();
    for filter in topic::RESEARCHER_SUBSCRIPTIONS {
        client.subscribe(filter).unwrap();
    }
    let (driver, handle) = ResearcherDriver::new(ResearcherConfig::new("smol-researcher"));
    let adapter = std::thread::spawn(move || smol::block_on(drive(driver, client)));

    let ping = Submission::to_nodes(Request::ping(), nodes.clone());
    let outcome = smol::block_on(handle.submit(ping).recv_async())
        .unwrap()
        .unwrap();
    println!("{:?} answered in {:?}", outcome.online(), outcome.elapsed);
    assert_eq!(outcome.online(), nodes);

    drop(handle);
    adapter.join().unwrap();
}
