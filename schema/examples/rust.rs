fn main() {
    let path = std::env::args().nth(1).unwrap();
    let s = dextlink_schema::load(&path).unwrap_or_else(|e| panic!("{e}"));
    print!("{}", dextlink_schema::emit::rust::emit(&s.interface, &Default::default()));
}
