//! Painting primitives of the built-in dataset: lattice noise, textures (noise, stripes,
//! gradients, tiles, window grids) and a canvas that paints an image and its label map
//! together, so that every pixel's colour and class come from the same shape.

use rand::rngs::StdRng;
use rand::Rng;

/// Integer hash of a lattice point to `[0, 1)`.
pub(crate) fn hash01(x: i32, y: i32, salt: u32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x8da6_b343)
        ^ (y as u32).wrapping_mul(0xd816_3841)
        ^ salt.wrapping_mul(0xcb1a_b31f);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    (h >> 8) as f32 / (1u32 << 24) as f32
}

/// Value noise in `[0, 1)` with cells of `cell` pixels (bilinear between lattice values).
pub(crate) fn vnoise(x: f32, y: f32, cell: f32, salt: u32) -> f32 {
    let (gx, gy) = (x / cell, y / cell);
    let (ix, iy) = (gx.floor() as i32, gy.floor() as i32);
    let (fx, fy) = (gx - ix as f32, gy - iy as f32);
    let a = hash01(ix, iy, salt) * (1.0 - fx) + hash01(ix + 1, iy, salt) * fx;
    let b = hash01(ix, iy + 1, salt) * (1.0 - fx) + hash01(ix + 1, iy + 1, salt) * fx;
    a * (1.0 - fy) + b * fy
}

/// How a surface is coloured between its two colours `a` and `b`.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// `a` plus fine noise.
    Flat,
    /// Blotchy mix of `a` and `b` (value noise of the given cell size).
    Noise(f32),
    /// Horizontal (`false`) or vertical (`true`) stripes of the given period.
    Stripes(f32, bool),
    /// Vertical gradient from `a` at `y0` to `b` at `y1`.
    Grad(f32, f32),
    /// Tiles of the given size with `b` joints.
    Tiles(f32),
    /// Facade: `b` windows of the given size on an `a` wall.
    Windows(f32),
}

#[derive(Clone, Copy)]
pub(crate) struct Tex {
    pub a: [f32; 3],
    pub b: [f32; 3],
    pub kind: Kind,
    pub salt: u32,
}

impl Tex {
    pub fn color(&self, x: f32, y: f32) -> [f32; 3] {
        let t = match self.kind {
            Kind::Flat => 0.0,
            Kind::Noise(cell) => vnoise(x, y, cell, self.salt),
            Kind::Stripes(p, vertical) => {
                let u = if vertical { x } else { y };
                if (u / p).floor() as i32 % 2 == 0 {
                    0.0
                } else {
                    1.0
                }
            }
            Kind::Grad(y0, y1) => ((y - y0) / (y1 - y0).max(1.0)).clamp(0.0, 1.0),
            Kind::Tiles(s) => {
                let (u, v) = ((x / s).fract(), (y / (0.6 * s)).fract());
                if u < 0.15 || v < 0.2 {
                    1.0
                } else {
                    0.0
                }
            }
            Kind::Windows(s) => {
                let (u, v) = ((x / s).fract(), (y / (1.4 * s)).fract());
                if (0.3..0.8).contains(&u) && (0.3..0.75).contains(&v) {
                    1.0
                } else {
                    0.0
                }
            }
        };
        let n = 10.0 * (hash01(x as i32, y as i32, self.salt ^ 0x77) - 0.5);
        [0, 1, 2].map(|c| self.a[c] * (1.0 - t) + self.b[c] * t + n)
    }
}

pub(crate) struct Canvas {
    pub width: usize,
    pub height: usize,
    pub img: Vec<[f32; 3]>,
    pub lab: Vec<u8>,
}

impl Canvas {
    /// Paints `label` and `tex` on the pixels of the box `[x0, x1) × [y0, y1)` whose
    /// centres satisfy `inside`.
    pub fn fill(
        &mut self,
        (x0, y0, x1, y1): (f32, f32, f32, f32),
        label: u8,
        tex: &Tex,
        inside: impl Fn(f32, f32) -> bool,
    ) {
        let (w, h) = (self.width, self.height);
        let cx = |v: f32| (v.floor().max(0.0) as usize).min(w);
        let cy = |v: f32| (v.floor().max(0.0) as usize).min(h);
        for y in cy(y0)..cy(y1.ceil()) {
            for x in cx(x0)..cx(x1.ceil()) {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                if inside(px, py) {
                    self.img[y * w + x] = tex.color(px, py);
                    self.lab[y * w + x] = label;
                }
            }
        }
    }
}

pub(crate) fn rgb(rng: &mut StdRng, lo: [f32; 3], hi: [f32; 3]) -> [f32; 3] {
    [0, 1, 2].map(|c| lo[c] + (hi[c] - lo[c]) * rng.random::<f32>())
}

/// Any colour: random hue, saturation and value (greys, whites and blacks included).
pub(crate) fn any_color(rng: &mut StdRng) -> [f32; 3] {
    let (h, s, v) = (
        rng.random::<f32>() * 6.0,
        rng.random::<f32>().powf(0.7),
        40.0 + 215.0 * rng.random::<f32>(),
    );
    let f = h.fract();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match h as i32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

pub(crate) fn scale3(c: [f32; 3], k: f32) -> [f32; 3] {
    c.map(|v| v * k)
}
