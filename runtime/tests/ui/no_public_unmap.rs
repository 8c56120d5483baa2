// Mappings are RAII regions: nothing but dropping the last `Mapping` of a
// memory type unmaps it, so safe code cannot unmap under a live one.
use dextlink::Transport;

fn unmap_under_a_live_mapping(transport: &dyn Transport) {
    let region = transport.map_memory(1).unwrap();
    transport.unmap_memory(1, &region);
}

fn main() {}
