pub struct Point;

#[classtrack::class(label = "points")]
impl Point {
    pub fn new() -> Self {
        Point
    }
}

fn main() {}
