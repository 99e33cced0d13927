//! The built-in dataset: procedurally generated street scenes (docs/training.md), the default of
//! `wgseg train`, needing no download and no files.
//!
//! - 10 classes: sky, building, road, sidewalk, vegetation, car, pole, person, sign,
//!   bicycle; 255 = ignore (small "unlabelled clutter" blobs in some images).
//! - 96×128 pixels (H×W) at scale 1; split `train` has 64 images, `val` 16. Sample `i` of a
//!   split is a pure function of `(seed, split, i)`, generated on the fly in `load`.
//! - Long-tailed like a street: sky, building, road and sidewalk cover most pixels; poles,
//!   people, signs and bicycles are thin or small and absent from many images (the most
//!   frequent class has well over 50× the pixels of the rarest; the shares measured for
//!   seed 0 are in the README's data section).
//! - Colour alone does not solve it: overcast skies are grey like roads, cars take any
//!   colour (grey and white included), buildings carry window grids, foliage is noisy,
//!   sidewalks are tiled, and every image gets its own illumination and sensor noise.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::image_io::scale_sample;
use super::paint::{any_color, hash01, rgb, scale3, vnoise, Canvas, Kind, Tex};
use super::{bad, seed_of, ClassInfo, Dataset, DatasetInfo, Sample};
use crate::error::Result;

/// Image height at scale 1.
pub const HEIGHT: usize = 96;
/// Image width at scale 1.
pub const WIDTH: usize = 128;
/// Images in `train`.
pub const TRAIN_LEN: usize = 64;
/// Images in `val`.
pub const VAL_LEN: usize = 16;

/// Bumped whenever the generator changes what it draws.
pub const GENERATOR_VERSION: u64 = 1;

const SKY: u8 = 0;
const BUILDING: u8 = 1;
const ROAD: u8 = 2;
const SIDEWALK: u8 = 3;
const VEGETATION: u8 = 4;
const CAR: u8 = 5;
const POLE: u8 = 6;
const PERSON: u8 = 7;
const SIGN: u8 = 8;
const BICYCLE: u8 = 9;
const IGNORE: u8 = 255;

/// Names and colours (Cityscapes colours for the shared classes).
const CLASSES: [(&str, [u8; 3]); 10] = [
    ("sky", [70, 130, 180]),
    ("building", [70, 70, 70]),
    ("road", [128, 64, 128]),
    ("sidewalk", [244, 35, 232]),
    ("vegetation", [107, 142, 35]),
    ("car", [0, 0, 142]),
    ("pole", [153, 153, 153]),
    ("person", [220, 20, 60]),
    ("sign", [220, 220, 0]),
    ("bicycle", [119, 11, 32]),
];

/// The built-in dataset's description.
pub fn builtin_info() -> DatasetInfo {
    DatasetInfo {
        name: "builtin-streets".into(),
        classes: CLASSES
            .iter()
            .map(|(n, c)| ClassInfo {
                name: (*n).into(),
                color: *c,
            })
            .collect(),
        ignore_index: 255,
        tail: None,
        head: None,
    }
}

/// One split of the built-in data.
#[derive(Debug, Clone)]
pub struct Builtin {
    info: DatasetInfo,
    split_id: u64,
    len: usize,
    scale: f32,
    seed: u64,
}

impl Builtin {
    /// `split` is `train` or `val`.
    pub fn new(split: &str, scale: f32, seed: u64) -> Result<Builtin> {
        let (split_id, len) = match split {
            "train" => (0, TRAIN_LEN),
            "val" => (1, VAL_LEN),
            other => {
                return Err(bad(
                    std::path::Path::new("built-in"),
                    format!("the built-in data has splits \"train\" and \"val\", not \"{other}\""),
                ))
            }
        };
        Ok(Builtin {
            info: builtin_info(),
            split_id,
            len,
            scale,
            seed,
        })
    }
}

impl Dataset for Builtin {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }
    fn len(&self) -> usize {
        self.len
    }
    fn name(&self, i: usize) -> String {
        let split = if self.split_id == 0 { "train" } else { "val" };
        format!("builtin_{split}_{i:04}")
    }
    fn load(&self, i: usize) -> Result<Sample> {
        if i >= self.len {
            return Err(bad(
                std::path::Path::new("built-in"),
                format!("sample {i} out of range ({} samples)", self.len),
            ));
        }
        let seed = seed_of(&[self.seed, self.split_id, i as u64, GENERATOR_VERSION]);
        Ok(scale_sample(generate(seed), self.scale))
    }
}

/// Draws one scene from `seed`.
pub fn generate(seed: u64) -> Sample {
    let mut rng = StdRng::seed_from_u64(seed);
    let salt = |rng: &mut StdRng| rng.random::<u32>();
    let (w, h) = (WIDTH as f32, HEIGHT as f32);
    let mut cv = Canvas {
        width: WIDTH,
        height: HEIGHT,
        img: vec![[0.0; 3]; WIDTH * HEIGHT],
        lab: vec![SKY; WIDTH * HEIGHT],
    };
    let all = (0.0, 0.0, w, h);
    let horizon = h * rng.random_range(0.36..0.52);

    // Sky: blue gradient, or (30 %) overcast grey that looks like asphalt.
    let sky = if rng.random_bool(0.3) {
        let g = rng.random_range(120.0..200.0);
        Tex {
            a: [g, g, g + 5.0],
            b: [g + 30.0; 3],
            kind: Kind::Noise(24.0),
            salt: salt(&mut rng),
        }
    } else {
        let top = rgb(&mut rng, [40.0, 90.0, 160.0], [100.0, 150.0, 230.0]);
        Tex {
            a: top,
            b: [200.0, 215.0, 235.0],
            kind: Kind::Grad(0.0, horizon),
            salt: salt(&mut rng),
        }
    };
    cv.fill(all, SKY, &sky, |_, _| true);

    // Buildings: a row of blocks standing on the horizon, with gaps of sky.
    let mut x = rng.random_range(-10.0..5.0);
    while x < w {
        let bw = rng.random_range(14.0..46.0);
        if rng.random_bool(0.85) {
            let top = rng.random_range(0.0..(horizon - 6.0).max(1.0));
            let wall = rgb(&mut rng, [70.0, 60.0, 50.0], [200.0, 180.0, 160.0]);
            let kind = match rng.random_range(0..3) {
                0 => Kind::Windows(rng.random_range(4.0..9.0)),
                1 => Kind::Stripes(rng.random_range(2.0..5.0), rng.random_bool(0.5)),
                _ => Kind::Noise(rng.random_range(3.0..10.0)),
            };
            let other = scale3(wall, rng.random_range(0.4..0.8));
            let tex = Tex {
                a: wall,
                b: other,
                kind,
                salt: salt(&mut rng),
            };
            cv.fill((x, top, x + bw, horizon + 1.0), BUILDING, &tex, |_, _| true);
        }
        x += bw;
    }

    // Ground: a road converging to a vanishing point, sidewalks on both sides.
    let vx = w * rng.random_range(0.3..0.7);
    let half_bottom = w * rng.random_range(0.3..0.5);
    let road_half = move |y: f32| 3.0 + (half_bottom - 3.0) * ((y - horizon) / (h - horizon));
    let g = rng.random_range(150.0..215.0);
    let walk_c = rgb(&mut rng, [g - 30.0, g - 40.0, g - 50.0], [g + 20.0, g, g]);
    let walk = Tex {
        a: walk_c,
        b: scale3(walk_c, 0.7),
        kind: Kind::Tiles(rng.random_range(4.0..9.0)),
        salt: salt(&mut rng),
    };
    cv.fill((0.0, horizon, w, h), SIDEWALK, &walk, |_, _| true);
    let asphalt = rng.random_range(50.0..120.0);
    let road = Tex {
        a: [asphalt; 3],
        b: [asphalt + 25.0; 3],
        kind: Kind::Noise(rng.random_range(2.0..6.0)),
        salt: salt(&mut rng),
    };
    cv.fill((0.0, horizon, w, h), ROAD, &road, |px, py| {
        (px - vx).abs() < road_half(py)
    });
    // Dashed centre line (still road).
    let paint = Tex {
        a: [230.0, 230.0, 210.0],
        b: [0.0; 3],
        kind: Kind::Flat,
        salt: 1,
    };
    cv.fill((0.0, horizon, w, h), ROAD, &paint, |px, py| {
        let t = (py - horizon) / (h - horizon);
        (px - vx).abs() < 0.3 + 1.2 * t && ((py - horizon) / (2.0 + 8.0 * t)).fract() < 0.5
    });
    // Perspective scale at a ground row: 0 at the horizon, 1 at the bottom.
    let depth = move |y: f32| ((y - horizon) / (h - horizon)).clamp(0.05, 1.0);

    // Vegetation: trees (trunk + noisy crown) and hedges.
    for _ in 0..rng.random_range(0..4) {
        let base = rng.random_range(horizon..(horizon + 0.3 * (h - horizon)));
        let s = depth(base) * rng.random_range(20.0..45.0) + 6.0;
        let tx = rng.random_range(0.0..w);
        let green = rgb(&mut rng, [30.0, 70.0, 10.0], [120.0, 170.0, 70.0]);
        let crown = Tex {
            a: green,
            b: scale3(green, 0.5),
            kind: Kind::Noise(2.0),
            salt: salt(&mut rng),
        };
        let trunk = Tex {
            a: [90.0, 65.0, 40.0],
            b: [60.0, 45.0, 30.0],
            kind: Kind::Stripes(2.0, true),
            salt: 3,
        };
        cv.fill(
            (tx - 0.06 * s, base - s, tx + 0.06 * s + 1.0, base),
            VEGETATION,
            &trunk,
            |_, _| true,
        );
        let (cy, r) = (base - 0.9 * s, 0.45 * s);
        let ns = salt(&mut rng);
        cv.fill(
            (tx - r - 2.0, cy - r - 2.0, tx + r + 2.0, cy + r + 2.0),
            VEGETATION,
            &crown,
            |px, py| {
                let d = ((px - tx).powi(2) + (py - cy).powi(2)).sqrt();
                d < r * (0.75 + 0.5 * vnoise(px, py, 3.0, ns))
            },
        );
    }
    if rng.random_bool(0.4) {
        let top = horizon + rng.random_range(0.0..6.0);
        let hedge_c = rgb(&mut rng, [20.0, 60.0, 20.0], [90.0, 140.0, 60.0]);
        let hedge = Tex {
            a: hedge_c,
            b: scale3(hedge_c, 0.6),
            kind: Kind::Noise(1.5),
            salt: salt(&mut rng),
        };
        let left = rng.random_bool(0.5);
        cv.fill(
            (0.0, top - 4.0, w, top + 3.0),
            VEGETATION,
            &hedge,
            |px, py| {
                let off = (px - vx).abs() > road_half(py) + 4.0;
                off && (px < vx) == left
            },
        );
    }

    // Poles with signs, on the sidewalk.
    let mut poles = Vec::new();
    for _ in 0..rng.random_range(0..3) {
        let base = rng.random_range((horizon + 4.0)..h);
        let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let px = vx + side * (road_half(base) + rng.random_range(2.0..10.0));
        poles.push((px, base));
    }
    for &(px, base) in &poles {
        let d = depth(base);
        let (pw, ph) = (0.6 + 1.8 * d, 20.0 + 50.0 * d);
        let metal = rgb(&mut rng, [60.0, 60.0, 60.0], [170.0, 170.0, 160.0]);
        let tex = Tex {
            a: metal,
            b: scale3(metal, 0.6),
            kind: Kind::Grad(base - ph, base),
            salt: 5,
        };
        cv.fill(
            (px - pw / 2.0, base - ph, px + pw / 2.0, base),
            POLE,
            &tex,
            |_, _| true,
        );
        if rng.random_bool(0.6) {
            let (sy, r) = (base - ph + 2.0 + 3.0 * d, 1.5 + 3.5 * d);
            let (a, b) = match rng.random_range(0..3) {
                0 => ([200.0, 30.0, 30.0], [240.0, 240.0, 240.0]),
                1 => ([30.0, 70.0, 190.0], [230.0, 230.0, 230.0]),
                _ => ([230.0, 200.0, 30.0], [30.0, 30.0, 30.0]),
            };
            let tex = Tex {
                a,
                b,
                kind: Kind::Grad(sy - r, sy + r),
                salt: 9,
            };
            let shape = rng.random_range(0..3);
            cv.fill((px - r, sy - r, px + r, sy + r), SIGN, &tex, |x, y| {
                let (dx, dy) = ((x - px) / r, (y - sy) / r);
                match shape {
                    0 => dx * dx + dy * dy < 1.0,
                    1 => dy > -1.0 && dy < 1.0 && dx.abs() < (dy + 1.0) / 2.0,
                    _ => dx.abs() < 1.0 && dy.abs() < 0.7,
                }
            });
        }
    }

    // Cars on the road, far to near.
    let mut cars: Vec<f32> = (0..rng.random_range(0..4))
        .map(|_| rng.random_range((horizon + 3.0)..h + 4.0))
        .collect();
    cars.sort_by(f32::total_cmp);
    for base in cars {
        let d = depth(base);
        let cw = 8.0 + 42.0 * d;
        let ch = cw * rng.random_range(0.45..0.6);
        let cx = vx + rng.random_range(-0.8..0.8) * road_half(base);
        let body = any_color(&mut rng);
        let tex = Tex {
            a: body,
            b: scale3(body, 0.7),
            kind: Kind::Grad(base - ch, base),
            salt: salt(&mut rng),
        };
        let glass = Tex {
            a: [40.0, 50.0, 60.0],
            b: [110.0, 130.0, 150.0],
            kind: Kind::Grad(base - ch, base),
            salt: 11,
        };
        let wheel = Tex {
            a: [20.0; 3],
            b: [20.0; 3],
            kind: Kind::Flat,
            salt: 13,
        };
        let (x0, x1) = (cx - cw / 2.0, cx + cw / 2.0);
        let roof = base - ch;
        cv.fill(
            (x0, base - 0.55 * ch, x1, base - 0.12 * ch),
            CAR,
            &tex,
            |_, _| true,
        );
        cv.fill(
            (x0 + 0.18 * cw, roof, x1 - 0.18 * cw, base - 0.5 * ch),
            CAR,
            &glass,
            |x, y| {
                let slope = (y - roof) / (0.5 * ch) * 0.12 * cw;
                x > x0 + 0.3 * cw - slope && x < x1 - 0.3 * cw + slope
            },
        );
        let r = 0.13 * cw;
        for wx in [x0 + 0.22 * cw, x1 - 0.22 * cw] {
            let wy = base - r;
            cv.fill((wx - r, wy - r, wx + r, wy + r), CAR, &wheel, |x, y| {
                (x - wx).powi(2) + (y - wy).powi(2) < r * r
            });
        }
    }

    // People on the sidewalk.
    for _ in 0..rng.random_range(0..3) {
        let base = rng.random_range((horizon + 2.0)..h);
        let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let px = vx + side * (road_half(base) + rng.random_range(1.0..18.0));
        let ph = 10.0 + 28.0 * depth(base);
        let pw = 0.28 * ph;
        let shirt = any_color(&mut rng);
        let pants = any_color(&mut rng);
        let skin = rgb(&mut rng, [90.0, 60.0, 40.0], [240.0, 200.0, 170.0]);
        let top = Tex {
            a: shirt,
            b: scale3(shirt, 0.7),
            kind: Kind::Stripes(rng.random_range(1.5..4.0), false),
            salt: 17,
        };
        let legs = Tex {
            a: pants,
            b: scale3(pants, 0.8),
            kind: Kind::Flat,
            salt: 19,
        };
        let head = Tex {
            a: skin,
            b: skin,
            kind: Kind::Flat,
            salt: 23,
        };
        let stride = rng.random_range(0.0..0.3) * pw;
        cv.fill(
            (px - pw, base - 0.5 * ph, px + pw, base),
            PERSON,
            &legs,
            |x, y| {
                let t = (base - y) / (0.5 * ph);
                let spread = stride * (1.0 - t);
                ((x - px + spread + 0.22 * pw).abs() < 0.2 * pw)
                    || ((x - px - spread - 0.22 * pw).abs() < 0.2 * pw)
            },
        );
        cv.fill(
            (
                px - pw / 2.0,
                base - 0.85 * ph,
                px + pw / 2.0,
                base - 0.48 * ph,
            ),
            PERSON,
            &top,
            |_, _| true,
        );
        let (hy, hr) = (base - 0.92 * ph, 0.1 * ph);
        cv.fill(
            (px - hr, hy - hr, px + hr, hy + hr),
            PERSON,
            &head,
            |x, y| (x - px).powi(2) + (y - hy).powi(2) < hr * hr,
        );
    }

    // Bicycles (rare): two rings and a frame, at the road's edge.
    if rng.random_bool(0.35) {
        let base = rng.random_range((horizon + 6.0)..h);
        let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let bx = vx + side * (road_half(base) + rng.random_range(-4.0..6.0));
        let s = 7.0 + 16.0 * depth(base);
        let r = 0.28 * s;
        let frame_c = any_color(&mut rng);
        let tex = Tex {
            a: frame_c,
            b: [25.0; 3],
            kind: Kind::Noise(1.0),
            salt: 29,
        };
        let wheels = [(bx - 0.5 * s + r, base - r), (bx + 0.5 * s - r, base - r)];
        let th = (0.08 * s).max(0.6);
        cv.fill(
            (bx - 0.5 * s, base - s, bx + 0.5 * s, base),
            BICYCLE,
            &tex,
            |x, y| {
                let ring = wheels.iter().any(|&(wx, wy)| {
                    let d = ((x - wx).powi(2) + (y - wy).powi(2)).sqrt();
                    (d - r).abs() < th
                });
                let bar = (y - (base - 1.6 * r)).abs() < th && (x - bx).abs() < 0.5 * s - r;
                let post = (x - bx).abs() < th && y > base - 2.2 * r && y < base - r;
                ring || bar || post
            },
        );
    }

    // Unlabelled clutter (ignore index), sometimes.
    if rng.random_bool(0.25) {
        let (cx, cy) = (rng.random_range(0.0..w), rng.random_range(horizon..h));
        let r = rng.random_range(2.0..6.0);
        let c = any_color(&mut rng);
        let tex = Tex {
            a: c,
            b: scale3(c, 0.5),
            kind: Kind::Noise(2.0),
            salt: 31,
        };
        cv.fill((cx - r, cy - r, cx + r, cy + r), IGNORE, &tex, |x, y| {
            (x - cx).abs() + (y - cy).abs() < r
        });
    }

    // Illumination and sensor noise.
    let gain = rgb(&mut rng, [0.7, 0.7, 0.7], [1.2, 1.2, 1.2]);
    let tint = rgb(&mut rng, [0.92, 0.92, 0.92], [1.08, 1.08, 1.08]);
    let ns = salt(&mut rng);
    let mut image = Vec::with_capacity(WIDTH * HEIGHT * 3);
    for (i, px) in cv.img.iter().enumerate() {
        let n = 12.0 * (hash01(i as i32, 7, ns) - 0.5);
        for c in 0..3 {
            image.push((px[c] * gain[c] * tint[c] + n).round().clamp(0.0, 255.0) as u8);
        }
    }
    Sample {
        image,
        label: cv.lab,
        height: HEIGHT,
        width: WIDTH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ClassStats;

    /// Per-class pixel counts and the number of images each class appears in.
    fn census(ds: &Builtin) -> (Vec<u64>, Vec<usize>) {
        let mut counts = vec![0u64; 10];
        let mut present = vec![0usize; 10];
        for i in 0..ds.len() {
            let Ok(s) = ds.load(i) else {
                return (counts, present);
            };
            let mut seen = [false; 10];
            for &v in &s.label {
                if (v as usize) < 10 {
                    counts[v as usize] += 1;
                    seen[v as usize] = true;
                }
            }
            for c in 0..10 {
                present[c] += seen[c] as usize;
            }
        }
        (counts, present)
    }

    #[test]
    fn builtin_is_long_tailed_varied_and_deterministic() -> Result<()> {
        let ds = Builtin::new("train", 1.0, 0)?;
        let (counts, present) = census(&ds);
        let total: u64 = counts.iter().sum();
        for (c, (name, _)) in CLASSES.iter().enumerate() {
            eprintln!(
                "{name:>10}: {:6.2} %  in {:2}/{} images",
                100.0 * counts[c] as f64 / total as f64,
                present[c],
                ds.len()
            );
        }
        let max = counts.iter().copied().max().unwrap_or(0);
        let min = counts.iter().copied().min().unwrap_or(0);
        assert!(min > 0, "every class occurs: {counts:?}");
        assert!(max >= 50 * min, "most frequent ≥ 50× rarest: {counts:?}");
        assert!(present.iter().filter(|&&p| p > 0).count() >= 8);
        // The rarest classes are absent from many images (at least a quarter).
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by_key(|&c| counts[c]);
        for &c in &order[..2] {
            assert!(
                present[c] * 4 <= ds.len() * 3,
                "{c} in {} images",
                present[c]
            );
        }
        // Same seed → same bytes; another seed or split → other images.
        // (Compared with `==` so that a failure does not print whole images.)
        let a = ds.load(5)?;
        assert!(
            a == Builtin::new("train", 1.0, 0)?.load(5)?,
            "same seed, same bytes"
        );
        assert!(a != Builtin::new("train", 1.0, 1)?.load(5)?, "another seed");
        assert!(a != Builtin::new("val", 1.0, 0)?.load(5)?, "another split");
        assert_eq!(ClassStats::compute(&ds, |_, _| {})?.counts, counts);
        Ok(())
    }
}
