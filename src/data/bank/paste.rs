//! Pasting: an entry rendered at the paste scale (the bounding box of its class pixels in
//! the resized crop, bilinear for the values and nearest for the mask) and written into an
//! image (see the module doc of [`super`]).

use super::entry::Entry;
use crate::data::image_io::{bilerp, bilinear_tap, nearest_tap};
use crate::data::scaled_dim;

impl Entry {
    /// The patch this entry pastes at scale `resize` (see the module doc): the bounding box
    /// of the class's pixels in the resized crop, computed from the stored region only but
    /// equal to resizing the whole crop.
    pub(super) fn render(&self, resize: f32) -> Patch {
        let (ch, cw) = self.crop;
        let [by0, bx0, by1, bx1] = self.bbox;
        let (nh, nw) = (scaled_dim(ch, resize), scaled_dim(cw, resize));
        if (nh, nw) == (ch, cw) {
            let (h, w) = (by1 - by0 + 1, bx1 - bx0 + 1);
            let mut mask = Vec::with_capacity(h * w);
            let mut pixels = Vec::with_capacity(3 * h * w);
            for y in by0..=by1 {
                mask.extend((bx0..=bx1).map(|x| u8::from(self.is_class(y, x))));
            }
            for k in 0..3 {
                for y in by0..=by1 {
                    pixels.extend((bx0..=bx1).map(|x| self.px(k, y, x)));
                }
            }
            return Patch { h, w, mask, pixels };
        }
        // Destination rows / columns whose nearest source lies in the bounding box (a
        // contiguous range, the nearest map being monotone), with that source.
        let span = |n: usize, src: usize, lo: usize, hi: usize| -> Vec<(usize, usize)> {
            (0..n)
                .map(|d| (d, nearest_tap(d, src, n)))
                .filter(|&(_, s)| (lo..=hi).contains(&s))
                .collect()
        };
        let rows = span(nh, ch, by0, by1);
        let cols = span(nw, cw, bx0, bx1);
        // Tight bounding box (indices into rows / cols) of the resized class pixels.
        let (mut ty0, mut tx0, mut ty1, mut tx1) = (usize::MAX, usize::MAX, 0, 0);
        for (i, &(_, sy)) in rows.iter().enumerate() {
            for (j, &(_, sx)) in cols.iter().enumerate() {
                if self.is_class(sy, sx) {
                    (ty0, tx0) = (ty0.min(i), tx0.min(j));
                    (ty1, tx1) = (ty1.max(i), tx1.max(j));
                }
            }
        }
        if ty0 == usize::MAX {
            return Patch {
                h: 0,
                w: 0,
                mask: Vec::new(),
                pixels: Vec::new(),
            };
        }
        let (h, w) = (ty1 - ty0 + 1, tx1 - tx0 + 1);
        let mut mask = vec![0u8; h * w];
        let mut pixels = vec![0f32; 3 * h * w];
        let xtaps: Vec<_> = cols[tx0..=tx1]
            .iter()
            .map(|&(dx, sx)| (sx, bilinear_tap(dx, cw, nw)))
            .collect();
        for (i, &(dy, sy)) in rows[ty0..=ty1].iter().enumerate() {
            // Both taps lie within one pixel of the nearest source, so inside the region.
            let (y0, y1, fy) = bilinear_tap(dy, ch, nh);
            for (j, &(sx, (x0, x1, fx))) in xtaps.iter().enumerate() {
                if !self.is_class(sy, sx) {
                    continue;
                }
                mask[i * w + j] = 1;
                for k in 0..3 {
                    pixels[(k * h + i) * w + j] = bilerp(
                        self.px(k, y0, x0),
                        self.px(k, y0, x1),
                        self.px(k, y1, x0),
                        self.px(k, y1, x1),
                        fx,
                        fy,
                    );
                }
            }
        }
        Patch { h, w, mask, pixels }
    }
}

/// A rendered entry: the bounding box of the class pixels after resizing.
pub(super) struct Patch {
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) mask: Vec<u8>,
    pub(super) pixels: Vec<f32>,
}

impl Patch {
    /// Hard-copies every class pixel of the patch into image `img` (`3 × h × w`) and label
    /// `lab` (`h × w`) with its top-left corner at `(oy, ox)` (possibly negative: the patch
    /// is clipped to the image): the three channel values and the label `class`. Returns
    /// the pixels written.
    pub(super) fn write(
        &self,
        class: u8,
        (oy, ox): (i64, i64),
        img: &mut [f32],
        lab: &mut [u8],
        h: usize,
        w: usize,
    ) -> usize {
        let patch = self;
        let mut written = 0usize;
        for py in 0..patch.h {
            let y = oy + py as i64;
            if y < 0 || y >= h as i64 {
                continue;
            }
            for px in 0..patch.w {
                let x = ox + px as i64;
                if x < 0 || x >= w as i64 || patch.mask[py * patch.w + px] == 0 {
                    continue;
                }
                let at = y as usize * w + x as usize;
                lab[at] = class;
                for c in 0..3 {
                    img[c * h * w + at] = patch.pixels[(c * patch.h + py) * patch.w + px];
                }
                written += 1;
            }
        }
        written
    }
}
