#[derive(classtrack_macros::Footprint)]
pub union Bits {
    word: u64,
    bytes: [u8; 8],
}

fn main() {}
