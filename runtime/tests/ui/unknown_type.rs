dextlink::interface!("unknown_type.dextlink");

fn main() {}
