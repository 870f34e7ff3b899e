#[classtrack_macros::class]
fn build() -> Vec<u8> {
    vec![0; 16]
}

fn main() {
    let _ = build();
}
