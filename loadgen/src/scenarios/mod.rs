//! The scenarios. Each one measures one server (Ward or the baseline) and returns what it
//! measured; [`crate::run`] runs it against both and pairs the figures.

pub mod agent_idle;
pub mod checkin;
pub mod enroll;
pub mod fanout;
pub mod hold;
pub mod restart;

use std::time::Duration;

use crate::report::Measured;

/// Samples of one latency, sorted, for a distribution plot.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: &'static str,
    pub samples: Vec<Duration>,
}

impl Series {
    pub fn new(name: &'static str, samples: Vec<Duration>) -> Self {
        Self { name, samples }
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub measured: Measured,
    pub series: Vec<Series>,
    /// (what, counted, expected): the sanity checks a quick run asserts.
    pub counts: Vec<(&'static str, usize, usize)>,
}

/// A pause between phases so the previous one's work (connection set-up, logging) is over.
pub async fn settle(quick: bool) {
    let pause = if quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(2)
    };
    tokio::time::sleep(pause).await;
}
