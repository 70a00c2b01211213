//! The market-service binary (being built in the market-service issue).

fn main() {}
