fn main() {
    let path = std::env::args().nth(1).unwrap();
    match dextlink_schema::load(&path) {
        Ok(s) => {
            print!("{}", s.warnings.render(false));
            println!(
                "{:#?}",
                s.interface.structs.iter().map(|s| (&s.name, s.size, s.align)).collect::<Vec<_>>()
            );
            for m in &s.interface.methods {
                println!("{} {:?}", m.name, s.interface.dispatch_checks(m));
            }
            println!("{}", dextlink_schema::fingerprint::canonical(&s.interface));
            println!("{:016x}", s.interface.fingerprint);
        }
        Err(e) => print!("{e}"),
    }
}
