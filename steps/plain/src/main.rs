//! A plain WASI program that knows nothing of Cordon: prints its arguments
//! and copies `/in/greeting.txt` to `/out/greeting.txt` when they exist.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("plain step, argv = {args:?}");
    if let Ok(text) = std::fs::read_to_string("/in/greeting.txt") {
        std::fs::write("/out/greeting.txt", text.to_uppercase()).expect("write /out/greeting.txt");
    }
}
