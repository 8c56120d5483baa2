dextlink::interface!("padding.dextlink");

fn main() {}
