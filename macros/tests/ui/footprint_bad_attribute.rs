#[derive(classtrack_macros::Footprint)]
pub struct Cache {
    #[footprint(ignore)]
    entries: Vec<u8>,
}

fn main() {}
