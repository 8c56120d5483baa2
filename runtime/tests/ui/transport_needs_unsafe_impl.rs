// `Mapping` hands out references into what `map_memory` returns, so a
// transport promises what `Transport`'s `# Safety` section says: the trait
// can only be implemented with `unsafe impl`.
use dextlink::{Call, CallError, Error, MappedRegion, Reply, Transport};

struct Forged;

impl Transport for Forged {
    fn call(&self, _: Call<'_>) -> Result<Reply, CallError> {
        Err(CallError::Transport(Error::Disconnected))
    }
    fn map_memory(&self, _: u32) -> Result<MappedRegion<'_>, Error> {
        Err(Error::Disconnected)
    }
}

fn main() {}
