dextlink::interface!("reserved_reuse.dextlink");

fn main() {}
