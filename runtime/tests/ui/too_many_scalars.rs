dextlink::interface!("too_many_scalars.dextlink");

fn main() {}
