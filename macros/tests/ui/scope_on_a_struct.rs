#[classtrack_macros::scope("points")]
pub struct Point {
    x: i64,
}

fn main() {}
