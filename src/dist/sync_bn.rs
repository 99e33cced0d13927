//! Synchronised batch normalisation (`--sync-bn`, `train.sync_bn`): training-mode batch
//! norm whose statistics are those of the **global** batch, all replicas' images together,
//! as PyTorch's `SyncBatchNorm` computes them.
//!
//! Forward, per channel: each replica computes its count `n_r`, mean `m_r` and centred sum
//! of squares `M2_r` on its device; one all-reduce of `[n_r, n_r·m_r, M2_r + n_r·m_r²]`
//! (in `f64`) gives the global mean `m = Σ n_r m_r / N` and biased variance
//! `v = (Σ (M2_r + n_r m_r²) − N m²) / N`; the output is `act(γ (x − m)/√(v + ε) + β
//! [+ residual])` (the engine's fused normalisation pass) and the running statistics
//! move towards `m` and the unbiased `v·N/(N − 1)`.
//!
//! Backward, with `dz` the gradient before the activation and `x̂ = (x − m)/√(v + ε)`:
//! `dβ = Σ dz` and `dγ = Σ dz·x̂` over the replica's own pixels (the data-parallel
//! average then sums them over the replicas); one all-reduce of `Σ dz` and `Σ dz·x̂` gives
//! `dx = γ/√(v + ε) · (dz − Σ_all dz / N − x̂ · Σ_all dz·x̂ / N)`: the gradient of the sum
//! of every replica's loss, so that after the average over replicas every parameter's
//! gradient is the single-process one of the global batch.

use std::sync::Arc;

use super::Collective;
use crate::autograd::{no_grad, record_custom, CustomOp};
use crate::error::{Error, Result};
use crate::ops::{batch_norm2d_with, Activation, BatchNormState, Epilogue};
use crate::tensor::Tensor;

/// The backward of one synchronised batch-norm call (see the module docs).
struct SyncBn {
    comm: Arc<dyn Collective>,
    /// Global mean and `1/√(v + ε)`, `[1, C, 1, 1]` on the device.
    mean: Tensor,
    rstd: Tensor,
    /// Pixels per channel over all replicas.
    count: f64,
    act: Activation,
}

/// Per-channel sums over axes 0, 2, 3 read back together, as `f64`.
fn channel_sums(ts: &[&Tensor]) -> Result<Vec<f64>> {
    let _g = no_grad();
    let sums: Vec<Tensor> = ts
        .iter()
        .map(|t| t.sum_axes(&[0, 2, 3], false))
        .collect::<Result<_>>()?;
    let refs: Vec<&Tensor> = sums.iter().collect();
    Ok(read_f64(&refs)?.into_iter().flatten().collect())
}

/// The values of `ts`: one readback on a GPU, exact on the CPU backend.
fn read_f64(ts: &[&Tensor]) -> Result<Vec<Vec<f64>>> {
    if ts.iter().all(|t| !t.device().is_gpu()) {
        return ts.iter().map(|t| t.to_vec_f64()).collect();
    }
    Ok(Tensor::read_all(ts)?
        .into_iter()
        .map(|v| v.into_iter().map(f64::from).collect())
        .collect())
}

fn channel_tensor(v: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    let c = v.len();
    Tensor::from_f64(v, [1, c, 1, 1], &like.device())
}

impl CustomOp for SyncBn {
    fn name(&self) -> &'static str {
        "sync_batch_norm2d"
    }

    fn backward(&self, inputs: &[Tensor], out: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (x, gamma) = (&inputs[0], &inputs[1]);
        let c = gamma.numel();
        let dz = match self.act {
            Activation::Relu => g.mul(&out.gt(&Tensor::zeros([1], &out.device())?)?)?,
            Activation::Identity => g.clone(),
        };
        let xhat = x.sub(&self.mean)?.mul(&self.rstd)?;
        let dzx = dz.mul(&xhat)?;
        let local = channel_sums(&[&dz, &dzx])?;
        let mut global = local.clone();
        self.comm.all_reduce_f64(&mut global)?;
        let n = self.count;
        let mean_dz = channel_tensor(global[..c].iter().map(|s| s / n).collect(), x)?;
        let mean_dzx = channel_tensor(global[c..].iter().map(|s| s / n).collect(), x)?;
        let scale = gamma.reshape([1, c, 1, 1])?.mul(&self.rstd)?;
        let dx = dz.sub(&mean_dz)?.sub(&xhat.mul(&mean_dzx)?)?.mul(&scale)?;
        let dgamma = Tensor::from_f64(local[c..].to_vec(), [c], &x.device())?;
        let dbeta = Tensor::from_f64(local[..c].to_vec(), [c], &x.device())?;
        let mut grads = vec![Some(dx), Some(dgamma), Some(dbeta)];
        if inputs.len() > 3 {
            grads.push(Some(dz));
        }
        Ok(grads)
    }
}

/// Training-mode batch norm over the global batch of the ranks of `comm` (module docs):
/// `act(bn(x) [+ residual])` and the updated running statistics. Every rank must call it
/// for the same layers in the same order (the replicas run the same network).
#[allow(clippy::too_many_arguments)]
pub fn sync_batch_norm2d(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    state: &BatchNormState,
    momentum: f64,
    eps: f64,
    ep: Epilogue,
    comm: &Arc<dyn Collective>,
) -> Result<(Tensor, BatchNormState)> {
    const OP: &str = "sync_batch_norm2d";
    let d = x.dims();
    if d.len() != 4 || gamma.numel() != d[1] {
        return Err(Error::shape(
            OP,
            format!(
                "x of shape {} with {} channels of γ",
                x.shape(),
                gamma.numel()
            ),
        ));
    }
    let c = d[1];
    let n_local = (d[0] * d[2] * d[3]) as f64;
    let (y, mean, rstd, var, count) = {
        let _g = no_grad();
        // Centred on the replica's own mean `a` (as the device computed it), then, exactly
        // in f64: Σx = n·a + Σ(x − a), Σx² = Σ(x − a)² + 2a·Σ(x − a) + n·a².
        let a = x.mean_axes(&[0, 2, 3], true)?;
        let dev = x.sub(&a)?;
        let s1 = dev.sum_axes(&[0, 2, 3], false)?;
        let s2 = dev.square()?.sum_axes(&[0, 2, 3], false)?;
        let r = read_f64(&[&a, &s1, &s2])?;
        let (a, s1, s2) = (&r[0], &r[1], &r[2]);
        let mut buf = Vec::with_capacity(1 + 2 * c);
        buf.push(n_local);
        for k in 0..c {
            buf.push(n_local * a[k] + s1[k]);
        }
        for k in 0..c {
            buf.push(s2[k] + 2.0 * a[k] * s1[k] + n_local * a[k] * a[k]);
        }
        comm.all_reduce_f64(&mut buf)?;
        let n = buf[0];
        if n <= 1.0 {
            return Err(Error::shape(
                OP,
                format!("training needs more than one value per channel, got {n} in all"),
            ));
        }
        let mean: Vec<f64> = buf[1..=c].iter().map(|s| s / n).collect();
        let var: Vec<f64> = buf[1 + c..]
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q - n * m * m) / n).max(0.0))
            .collect();
        let stats = BatchNormState {
            running_mean: Tensor::from_f64(mean.clone(), [c], &x.device())?,
            running_var: Tensor::from_f64(var.clone(), [c], &x.device())?,
        };
        // The evaluation path normalises with the given statistics in one fused pass.
        let residual = ep.residual.map(Tensor::detach);
        let (y, _) = batch_norm2d_with(
            &x.detach(),
            &gamma.detach(),
            &beta.detach(),
            &stats,
            false,
            momentum,
            eps,
            Epilogue {
                act: ep.act,
                residual: residual.as_ref(),
            },
        )?;
        let rstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        (
            y,
            channel_tensor(mean, x)?,
            channel_tensor(rstd, x)?,
            stats.running_var,
            n,
        )
    };
    let updated = {
        let _g = no_grad();
        let unbiased = var.mul_scalar(count / (count - 1.0))?;
        BatchNormState {
            running_mean: state
                .running_mean
                .mul_scalar(1.0 - momentum)?
                .add(&mean.reshape([c])?.mul_scalar(momentum)?)?,
            running_var: state
                .running_var
                .mul_scalar(1.0 - momentum)?
                .add(&unbiased.mul_scalar(momentum)?)?,
        }
    };
    let op = Arc::new(SyncBn {
        comm: comm.clone(),
        mean,
        rstd,
        count,
        act: ep.act,
    });
    let mut inputs = vec![x, gamma, beta];
    inputs.extend(ep.residual);
    Ok((record_custom(&y, &inputs, op)?, updated))
}
