//! The CPU reference of the fused pixel loss (`f64`, plain loops): the formulas of
//! `pixel.rs`'s module docs, evaluated directly per pixel. `1 − p` and `−log p` use the
//! softmax sum without the true class (`ln_1p` when `y` is the maximum), so that focal's
//! `(1 − p)^γ` and its derivative are exact as `p → 1`.

use super::pixel::{
    Layout, Modulation, NoiseSource, Normalization, PixelConfig, ROW_A, ROW_ACTIVE, ROW_B, ROW_M,
    ROW_W, TABLE_HEAD,
};
use super::rng;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The CPU reference (f64).
pub(crate) struct Cpu<'a> {
    x: &'a [f64],
    y: &'a [f64],
    table: &'a [f64],
    noise: Option<&'a [f64]>,
    lay: Layout,
    cfg: PixelConfig,
    /// `S_il` (PAT only).
    counts: Vec<f64>,
}

/// One valid pixel's softmax and terms.
struct PixelEval {
    /// `z_k − max z` (NaN for excluded classes).
    z_m: Vec<f64>,
    s: f64,
    /// `w·u·ℓ_v`.
    loss: f64,
    den: f64,
    coef: f64,
}

impl<'a> Cpu<'a> {
    pub(crate) fn new(
        x: &'a [f64],
        labels: &'a Tensor,
        table: &'a Tensor,
        noise: Option<&'a Tensor>,
        lay: Layout,
        cfg: PixelConfig,
    ) -> Result<Self> {
        let op = cfg.op;
        let mut cpu = Cpu {
            x,
            y: labels.cpu_data(op)?,
            table: table.cpu_data(op)?,
            noise: noise.map(|r| r.cpu_data(op)).transpose()?,
            lay,
            cfg,
            counts: Vec::new(),
        };
        if cfg.norm == Normalization::PerImageClass {
            let mut counts = vec![0.0; lay.n * lay.c];
            for v in 0..lay.pixels() {
                if let Some(y) = cpu.label(v) {
                    counts[v / lay.inner * lay.c + y] += 1.0;
                }
            }
            cpu.counts = counts;
        }
        Ok(cpu)
    }

    fn row(&self, r: usize, k: usize) -> f64 {
        self.table[TABLE_HEAD + r * self.lay.c + k]
    }

    fn active(&self, k: usize) -> bool {
        !self.cfg.masked || self.row(ROW_ACTIVE, k) != 0.0
    }

    /// The label of a valid pixel.
    fn label(&self, v: usize) -> Option<usize> {
        let y = self.y[v];
        let valid = y != f64::from(self.cfg.ignore_index) && y < self.lay.c as f64;
        (valid && self.active(y as usize)).then_some(y as usize)
    }

    pub(crate) fn check_excluded_labels(&self) -> Result<()> {
        for v in 0..self.lay.pixels() {
            let y = self.y[v];
            if y != f64::from(self.cfg.ignore_index)
                && y < self.lay.c as f64
                && !self.active(y as usize)
            {
                return Err(Error::shape(
                    self.cfg.op,
                    format!(
                        "pixel {v} is labelled {y}, a class with training-set count 0 \
                         (excluded from the balanced softmax)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `z_k` of pixel `v` labelled `y`.
    fn z(&self, v: usize, k: usize, y: usize) -> f64 {
        let e = self.lay.at(v, k);
        let mut z = self.x[e];
        if self.cfg.bias {
            z += self.row(ROW_B, k);
        }
        if self.cfg.margin && k == y {
            z -= self.row(ROW_M, k);
        }
        match self.cfg.noise {
            NoiseSource::None => {}
            NoiseSource::Seeded { key } => {
                z += self.row(ROW_A, k) * rng::normal(key, e as u32).abs()
            }
            NoiseSource::Tensor => {
                z += self.row(ROW_A, k) * self.noise.map_or(0.0, |r| r[e].abs());
            }
        }
        self.cfg.scale * z
    }

    fn eval(&self, v: usize, y: usize) -> PixelEval {
        let c = self.lay.c;
        let z: Vec<f64> = (0..c)
            .map(|k| {
                if self.active(k) {
                    self.z(v, k, y)
                } else {
                    f64::NAN
                }
            })
            .collect();
        let m = z
            .iter()
            .copied()
            .filter(|z| !z.is_nan())
            .fold(f64::NEG_INFINITY, f64::max);
        let z_m: Vec<f64> = z.iter().map(|z| z - m).collect();
        let terms = |skip_y: bool| -> f64 {
            (0..c)
                .filter(|&k| self.active(k) && !(skip_y && k == y))
                .map(|k| z_m[k].exp())
                .sum()
        };
        let s = terms(false);
        let sny = terms(true);
        let omp = sny / s;
        let p = z_m[y].exp() / s;
        let nlp = if z_m[y] == 0.0 {
            sny.ln_1p()
        } else {
            s.ln() - z_m[y]
        };
        let (beta, dcoef) = match self.cfg.modulation {
            Modulation::None => (1.0, 1.0),
            Modulation::Focal { gamma } => {
                let beta = omp.powf(gamma);
                let rho = if omp > 0.0 { nlp / omp } else { 1.0 };
                (beta, beta * (1.0 + gamma * p * rho))
            }
            Modulation::Falling { t, eps } => {
                let beta = ((omp - eps) / t).exp();
                (beta, beta * (1.0 + p * nlp / t))
            }
            Modulation::Rising { t } => {
                let beta = (-omp / t).exp();
                (beta, beta * (1.0 - p * nlp / t))
            }
        };
        let dcoef = if self.cfg.detach { beta } else { dcoef };
        let w = if self.cfg.weighted {
            self.row(ROW_W, y)
        } else {
            1.0
        };
        let (u, den) = match self.cfg.norm {
            Normalization::Mean => (1.0, 1.0),
            Normalization::SumWeights => (1.0, w),
            Normalization::PerImageClass => (1.0 / self.counts[v / self.lay.inner * c + y], 0.0),
        };
        let mut loss = w * u * beta * nlp;
        let eps = self.cfg.smoothing;
        if eps != 0.0 {
            // Label smoothing (plain cross-entropy only: u = β = s = 1): the target
            // (1 − ε)·e_y + ε/C, so ℓ = (1 − ε)·w_y·(−log p) + (ε/C)·Σ_k w_k·(−log q_k),
            // with −log q_k = log s − (z_k − max z) (the backward's coefficient of δ_ky
            // is scaled by 1 − ε likewise, in `backward`).
            let ln_s = s.ln();
            let smooth: f64 = (0..c)
                .filter(|&k| self.active(k))
                .map(|k| self.class_weight(k) * (ln_s - z_m[k]))
                .sum();
            loss = (1.0 - eps) * loss + eps / c as f64 * smooth;
        }
        PixelEval {
            z_m,
            s,
            loss,
            den,
            coef: w * u * self.cfg.scale * dcoef,
        }
    }

    /// `w_k` (1 without class weights).
    fn class_weight(&self, k: usize) -> f64 {
        if self.cfg.weighted {
            self.row(ROW_W, k)
        } else {
            1.0
        }
    }

    /// `(Σ w·u·ℓ, D)`.
    pub(crate) fn forward(&self) -> (f64, f64) {
        let (mut num, mut den) = (0.0, 0.0);
        for v in 0..self.lay.pixels() {
            if let Some(y) = self.label(v) {
                let e = self.eval(v, y);
                num += e.loss;
                den += e.den;
            }
        }
        if self.cfg.norm == Normalization::PerImageClass {
            den += self.lay.n as f64;
        }
        (num, den)
    }

    /// `∂L/∂x · g` with `gd = g / D`.
    pub(crate) fn backward(&self, gd: f64) -> Vec<f64> {
        let mut dx = vec![0.0; self.x.len()];
        if gd == 0.0 {
            return dx;
        }
        let eps = self.cfg.smoothing;
        if eps != 0.0 {
            return self.backward_smoothed(gd, eps);
        }
        for v in 0..self.lay.pixels() {
            let Some(y) = self.label(v) else { continue };
            let e = self.eval(v, y);
            for k in (0..self.lay.c).filter(|&k| self.active(k)) {
                let q = e.z_m[k].exp() / e.s;
                let delta = f64::from(u8::from(k == y));
                dx[self.lay.at(v, k)] = gd * e.coef * (q - delta);
            }
        }
        dx
    }

    /// [`Cpu::backward`] with label smoothing `ε` (plain cross-entropy, class weights `w`,
    /// `W = Σ_k w_k`): `∂ℓ_v/∂z_k = ((1 − ε)·w_y + (ε/C)·W)·q_k − (1 − ε)·w_y·δ_ky −
    /// (ε/C)·w_k`, times `gd`.
    fn backward_smoothed(&self, gd: f64, eps: f64) -> Vec<f64> {
        let c = self.lay.c;
        let mut dx = vec![0.0; self.x.len()];
        let active = || (0..c).filter(|&k| self.active(k));
        let each = eps / c as f64;
        let all = each * active().map(|k| self.class_weight(k)).sum::<f64>();
        for v in 0..self.lay.pixels() {
            let Some(y) = self.label(v) else { continue };
            let e = self.eval(v, y);
            let keep = (1.0 - eps) * e.coef;
            for k in active() {
                let q = e.z_m[k].exp() / e.s;
                let delta = f64::from(u8::from(k == y));
                dx[self.lay.at(v, k)] =
                    gd * ((keep + all) * q - keep * delta - each * self.class_weight(k));
            }
        }
        dx
    }
}
