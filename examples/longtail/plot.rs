//! The experiment's figure: per-class validation IoU by method as grouped bars (mean over
//! seeds, a whisker from the lowest to the highest seed), classes ordered by training-set
//! pixel frequency, most frequent first.

use std::path::Path;

use super::font;

/// One bar series.
pub struct Series {
    pub name: String,
    pub color: [u8; 3],
    /// Per class (in plot order): mean, min and max over seeds; `None` when the class never
    /// appears in the validation split.
    pub iou: Vec<Option<(f64, f64, f64)>>,
}

struct Canvas {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            rgb: vec![255; w * h * 3],
        }
    }
    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }
    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0.min(y1)..y0.max(y1) {
            for x in x0.min(x1)..x0.max(x1) {
                self.put(x, y, c);
            }
        }
    }
    fn text(&mut self, s: &str, x: i64, y: i64, scale: i64, c: [u8; 3]) {
        let mut pts = Vec::new();
        font::draw(s, x, y, scale, |px, py| pts.push((px, py)));
        for (px, py) in pts {
            self.put(px, py, c);
        }
    }
}

const BLACK: [u8; 3] = [0, 0, 0];
const GREY: [u8; 3] = [215, 215, 215];
const TEXT: [u8; 3] = [40, 40, 40];

/// Draws the chart. `classes`: names in plot order with their group (head/middle/tail).
pub fn plot(
    path: &Path,
    title: &str,
    classes: &[(String, String)],
    series: &[Series],
) -> wgseg::Result<()> {
    let bar = 7i64;
    let gap = 14i64;
    let group_w = bar * series.len() as i64 + gap;
    let (left, right, top, bottom) = (52i64, 16i64, 64i64, 58i64);
    let plot_h = 300i64;
    let w = left + group_w * classes.len() as i64 + right;
    let w = w.max(font::width(title, 2) + 2 * left);
    let h = top + plot_h + bottom;
    let mut cv = Canvas::new(w as usize, h as usize);
    cv.text(title, left, 10, 2, TEXT);
    // Legend, one row under the title.
    let mut lx = left;
    for s in series {
        cv.rect(lx, 36, lx + 10, 46, s.color);
        cv.text(&s.name, lx + 14, 38, 1, TEXT);
        lx += 14 + font::width(&s.name, 1) + 18;
    }
    // Axis and grid: IoU 0 to 1.
    let y_of = |v: f64| top + plot_h - (v.clamp(0.0, 1.0) * plot_h as f64).round() as i64;
    for k in 0..=5 {
        let v = k as f64 * 0.2;
        let y = y_of(v);
        cv.rect(left, y, w - right, y + 1, GREY);
        let label = format!("{v:.1}");
        cv.text(&label, left - 6 - font::width(&label, 1), y - 3, 1, TEXT);
    }
    cv.text("IoU", 8, top - 14, 1, TEXT);
    for (ci, (name, group)) in classes.iter().enumerate() {
        let gx = left + gap / 2 + ci as i64 * group_w;
        for (si, s) in series.iter().enumerate() {
            let x = gx + si as i64 * bar;
            if let Some(Some((mean, lo, hi))) = s.iou.get(ci) {
                cv.rect(x, y_of(*mean), x + bar - 1, y_of(0.0), s.color);
                // Whisker: lowest to highest seed.
                let xm = x + bar / 2 - 1;
                cv.rect(xm, y_of(*hi), xm + 1, y_of(*lo) + 1, BLACK);
            }
        }
        // Class name (cut to the group's width) and its group under the axis.
        let max_chars = ((group_w - 2) / font::ADVANCE as i64).max(1) as usize;
        let short: String = name.chars().take(max_chars).collect();
        let cx = gx + (group_w - gap) / 2;
        cv.text(
            &short,
            cx - font::width(&short, 1) / 2,
            top + plot_h + 8,
            1,
            TEXT,
        );
        let g: String = group.chars().take(max_chars).collect();
        cv.text(
            &g,
            cx - font::width(&g, 1) / 2,
            top + plot_h + 20,
            1,
            GREY_TEXT,
        );
    }
    cv.rect(left, y_of(0.0), w - right, y_of(0.0) + 1, BLACK);
    cv.text(
        "classes by training-set pixel frequency (most frequent first), whiskers: min-max over seeds",
        left,
        h - 18,
        1,
        TEXT,
    );
    wgseg::data::save_png_rgb(path, cv.w, cv.h, &cv.rgb)
}

const GREY_TEXT: [u8; 3] = [120, 120, 120];
