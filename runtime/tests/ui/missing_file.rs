dextlink::interface!("no_such_schema.dextlink");

fn main() {}
