#[classtrack_macros::scope(points)]
fn load() -> Vec<u8> {
    Vec::new()
}

fn main() {}
