//! One stored entry of the memory bank: the class's pixels of one augmented crop, with a
//! one-pixel margin (see the module doc of [`super`]).

/// Bytes an entry may take per pixel of its crop: three f32 channels and a mask byte.
pub(super) const BYTES_PER_PIXEL: usize = 3 * 4 + 1;

/// One stored entry: the class's pixels of one augmented crop with a one-pixel margin.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub(super) class: u8,
    /// `(H, W)` of the crop it came from.
    pub(super) crop: (usize, usize),
    /// Top-left corner of the stored region in the crop.
    pub(super) origin: (usize, usize),
    /// `(h, w)` of the stored region.
    pub(super) size: (usize, usize),
    /// Bounding box of the class pixels in crop coordinates: `y0, x0, y1, x1` inclusive.
    pub(super) bbox: [usize; 4],
    /// `3 × h × w` normalised values (CHW).
    pub(super) pixels: Vec<f32>,
    /// `h × w`: 1 where the pixel is of the class, else 0.
    pub(super) mask: Vec<u8>,
}

impl Entry {
    /// The class id.
    pub fn class(&self) -> u8 {
        self.class
    }
    /// `(H, W)` of the crop the entry came from.
    pub fn crop(&self) -> (usize, usize) {
        self.crop
    }
    /// Top-left corner `(y, x)` of the stored region in that crop.
    pub fn origin(&self) -> (usize, usize) {
        self.origin
    }
    /// `(h, w)` of the stored region (the class's bounding box grown by one pixel, clamped).
    pub fn size(&self) -> (usize, usize) {
        self.size
    }
    /// The region's normalised values, `3 × h × w` (CHW).
    pub fn pixels(&self) -> &[f32] {
        &self.pixels
    }
    /// The region's mask, `h × w`, 1 on the class's pixels.
    pub fn mask(&self) -> &[u8] {
        &self.mask
    }
    /// Payload bytes (values and mask).
    pub fn bytes(&self) -> usize {
        self.pixels.len() * 4 + self.mask.len()
    }

    /// The stored region: the bounding box grown by one pixel, clamped to the crop.
    pub(super) fn region(
        bbox: [usize; 4],
        crop: (usize, usize),
    ) -> ((usize, usize), (usize, usize)) {
        let [y0, x0, y1, x1] = bbox;
        let (oy, ox) = (y0.saturating_sub(1), x0.saturating_sub(1));
        let (ey, ex) = ((y1 + 1).min(crop.0 - 1), (x1 + 1).min(crop.1 - 1));
        ((oy, ox), (ey - oy + 1, ex - ox + 1))
    }

    /// Copies the region of class `class` with bounding box `bbox` out of image `img`
    /// (`3 × H × W`) and label `lab` (`H × W`).
    pub(super) fn capture(
        class: u8,
        bbox: [usize; 4],
        img: &[f32],
        lab: &[u8],
        h: usize,
        w: usize,
    ) -> Entry {
        let ((oy, ox), (rh, rw)) = Entry::region(bbox, (h, w));
        let mut pixels = Vec::with_capacity(3 * rh * rw);
        for k in 0..3 {
            for y in oy..oy + rh {
                let row = (k * h + y) * w;
                pixels.extend_from_slice(&img[row + ox..row + ox + rw]);
            }
        }
        let mut mask = Vec::with_capacity(rh * rw);
        for y in oy..oy + rh {
            mask.extend(
                lab[y * w + ox..y * w + ox + rw]
                    .iter()
                    .map(|&v| u8::from(v == class)),
            );
        }
        Entry {
            class,
            crop: (h, w),
            origin: (oy, ox),
            size: (rh, rw),
            bbox,
            pixels,
            mask,
        }
    }

    /// Value of channel `k` at crop coordinates `(y, x)` (inside the region).
    #[inline]
    pub(super) fn px(&self, k: usize, y: usize, x: usize) -> f32 {
        let (rh, rw) = self.size;
        self.pixels[(k * rh + y - self.origin.0) * rw + x - self.origin.1]
    }

    /// Whether crop pixel `(y, x)` (inside the bounding box) is of the class.
    #[inline]
    pub(super) fn is_class(&self, y: usize, x: usize) -> bool {
        self.mask[(y - self.origin.0) * self.size.1 + x - self.origin.1] != 0
    }
}
