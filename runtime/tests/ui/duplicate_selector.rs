dextlink::interface!("duplicate_selector.dextlink");

fn main() {}
