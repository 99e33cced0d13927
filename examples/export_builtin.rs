//! Writes the built-in data of a split as PNG files: `<out>/<name>.png` (image) and
//! `<out>/<name>_label.png` (class colours), to look at it or to try `wgseg infer` on it.
//!
//! `cargo run --release --example export_builtin -- OUT_DIR [train|val] [COUNT]`

use std::path::PathBuf;

use wgseg::data;

fn main() -> wgseg::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "builtin".into()));
    let split = args.next().unwrap_or_else(|| "val".into());
    let count: usize = args.next().and_then(|c| c.parse().ok()).unwrap_or(4);
    let ds = data::open(None, &split, 1.0, 0)?;
    std::fs::create_dir_all(&out).map_err(|source| wgseg::Error::Io {
        path: out.clone(),
        source,
    })?;
    for i in 0..count.min(ds.len()) {
        let s = ds.load(i)?;
        let name = ds.name(i);
        data::save_png_rgb(
            &out.join(format!("{name}.png")),
            s.width,
            s.height,
            &s.image,
        )?;
        let colours = data::colorize(&s.label, ds.info());
        data::save_png_rgb(
            &out.join(format!("{name}_label.png")),
            s.width,
            s.height,
            &colours,
        )?;
        println!("{}", out.join(format!("{name}.png")).display());
    }
    Ok(())
}
