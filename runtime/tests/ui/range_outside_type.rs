dextlink::interface!("range_outside_type.dextlink");

fn main() {}
