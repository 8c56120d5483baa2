dextlink::interface!(schema);

fn main() {}
